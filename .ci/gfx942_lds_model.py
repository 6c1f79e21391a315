"""LDS traffic and bank conflicts of the gfx942 attention kernel, from the addresses it uses.

CDNA3's LDS: 32 banks of 4 bytes, 128 bytes a clock. The model serves an access of `width` bytes a lane 128 / width
consecutive lanes a clock (b32: 32 lanes, b64: 16, b128: 8), each group taking as many clocks as the largest number
of distinct 4-byte words one bank must deliver (lanes reading the same word share it); conflict factor = clocks /
the conflict-free 64 * width / 128. That lane grouping is the model's assumption (the hardware pairs lane groups
differently for some widths), as are the clocks.

The address functions below mirror kernels/gfx942/attention_kernel.h: tests/test_gfx942_lds_model.py checks
key_chunk_slot, value_slot, value_word, every lane's store and read addresses (StoreBytes, qk_read_slot,
pv_read_slot) and the tile constants against the kernel's own, compiled from the header; the partial-score mapping is
transcribed from the kernel, and .ci/gfx942_isa_report.py checks that each kernel's pattern bytes equal the LDS
bytes of its compiled hot loop, so a kernel change that moves LDS traffic fails until this model follows it.
"""

WAVE = 64
WAVES = 8
KEYS_PER_TILE = 16
HEAD_DIM = 512
NOPE_DIM = 448
CHUNKS_PER_ROW = HEAD_DIM // 8  # 16-byte chunks of a bf16 key row
KEY_QUADS = KEYS_PER_TILE // 4
WAVE_PAIRS = 4  # waves w and w ^ 4 hold the two dim halves of the same heads
WAVE_READS = HEAD_DIM // 2 // 32  # 16-byte A reads of a wave and GEMM
KEYS_BYTES = KEYS_PER_TILE * CHUNKS_PER_ROW * 16  # SharedTiles::keys; SharedTiles::values follows


def key_chunk_slot(key, chunk):
    """16-byte slot of chunk `chunk` of key row `key` (attention_kernel.h)."""
    return key * CHUNKS_PER_ROW + (chunk ^ (key % 8))


def value_slot(slot):
    """Where 16-byte slot `slot` of the value columns is stored (attention_kernel.h)."""
    return slot ^ (((slot >> 3) & 1) | (((slot >> 6) & 1) << 1))


def value_word(v, quad):
    """8-byte word of value column v, key quad `quad` (attention_kernel.h)."""
    return 2 * value_slot(((v // 32) * KEY_QUADS + quad) * 16 + v % 16) + (v // 16) % 2


def qk_read_slot(dim_half, lane, p):
    """Key-row slot of QK read p of a lane (attention_kernel.h)."""
    return key_chunk_slot(lane % 16, dim_half * 32 + 4 * p + lane // 16)


def pv_read_slot(dim_half, lane, c):
    """Value slot of PV read c of a lane (attention_kernel.h)."""
    return value_slot((dim_half * WAVE_READS + c) * WAVE + lane)


def lane_coordinates(wave, lane):
    lane_row, lane_group = lane % 16, lane // 16
    return lane_row, lane_group, wave % WAVE_PAIRS, wave // WAVE_PAIRS


def patterns(wave, heads):
    """{name: (width, [per instruction: 64 byte addresses])} of one wave's LDS accesses in one key tile of a
    workgroup of `heads` heads (64 or 128: one or two head blocks a wave; with two, the pair swaps P^T too)."""
    blocks = heads // 16 // WAVE_PAIRS
    result = {}

    def add(name, width, count, address):  # address(instruction, lane) -> byte address
        result[name] = (width, [[address(i, lane) for lane in range(WAVE)] for i in range(count)])

    def share(lane):  # the lane's dequantized elements [first, + 4) and where they sit in a key row
        lane_row, lane_group, _, _ = lane_coordinates(wave, lane)
        first = wave * 64 + lane_row * 4
        return first, first // 8, first % 8 // 4, lane_group

    def key_store(i, lane):
        first, chunk, half, quad = share(lane)
        return 16 * key_chunk_slot(4 * quad + i, chunk) + 8 * half

    def value_store(j, lane):
        first, _, _, quad = share(lane)
        return KEYS_BYTES + 8 * value_word(first + j, quad)

    def qk_read(p, lane):
        return 16 * qk_read_slot(wave // WAVE_PAIRS, lane, p)

    def exchange_write(region, lane):  # PairExchange: partial scores, then P^T and the max, [wave][lane] each
        return 16 * (region * WAVES * WAVE + wave * WAVE + lane)

    def exchange_read(region, lane):
        return 16 * (region * WAVES * WAVE + (wave ^ WAVE_PAIRS) * WAVE + lane)

    def pv_read(c, lane):
        return KEYS_BYTES + 16 * pv_read_slot(wave // WAVE_PAIRS, lane, c)

    add("key rows: dequantized stores (b64)", 8, 4, key_store)
    add("value columns: dequantized stores (b64)", 8, 4, value_store)
    add("key rows: QK reads (b128)", 16, WAVE_READS, qk_read)
    add("partial scores: writes (b128)", 16, 1, exchange_write)
    add("partial scores: reads (b128)", 16, 1, exchange_read)
    if blocks == 2:
        add("P^T and max to the pair: writes (b128)", 16, 1, lambda _, lane: exchange_write(1, lane))
        add("P^T and max from the pair: reads (b128)", 16, 1, lambda _, lane: exchange_read(1, lane))
    add("value columns: PV reads (b128)", 16, WAVE_READS, pv_read)
    return result


def clocks(addresses, width):
    """LDS clocks of one instruction: 64 lanes' byte addresses, `width` bytes each."""
    lanes_per_clock = 128 // width
    total = 0
    for start in range(0, WAVE, lanes_per_clock):
        banks = {}
        for address in addresses[start : start + lanes_per_clock]:
            for word in range(address // 4, (address + width) // 4):
                banks.setdefault(word % 32, set()).add(word)
        total += max(len(words) for words in banks.values())
    return total


def tile_traffic(heads):
    """Per pattern, over the workgroup's 8 waves and one key tile: (instructions a wave, bytes, clocks, factor)."""
    table = {}
    for wave in range(WAVES):
        for name, (width, instructions) in patterns(wave, heads).items():
            entry = table.setdefault(name, [len(instructions), 0, 0])
            for addresses in instructions:
                entry[1] += WAVE * width
                entry[2] += clocks(addresses, width)
    return {name: (n, b, c, c / (b / 128)) for name, (n, b, c) in table.items()}
