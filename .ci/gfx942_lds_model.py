"""LDS traffic and bank conflicts of the gfx942 attention kernel, from the addresses it uses.

CDNA3's LDS: 32 banks of 4 bytes, 128 bytes a clock. The model serves an access of `width` bytes a lane 128 / width
consecutive lanes a clock (b32: 32 lanes, b64: 16, b128: 8), each group taking as many clocks as the largest number
of distinct 4-byte words one bank must deliver (lanes reading the same word share it); conflict factor = clocks /
the conflict-free 64 * width / 128. That lane grouping is the model's assumption (the hardware pairs lane groups
differently for some widths), as are the clocks.

The address functions and the workgroup shapes below mirror kernels/gfx942/attention_kernel.h:
tests/test_gfx942_lds_model.py checks key_chunk_slot, value_slot, value_word, every lane's store and read addresses
(StoreBytes, qk_read_slot, pv_read_slot), the exchange's entries and the shapes' constants against the kernel's own,
compiled from the header; .ci/gfx942_isa_report.py checks that each kernel's pattern bytes equal the LDS bytes of its
compiled hot loop, so a kernel change that moves LDS traffic fails until this model follows it.
"""

WAVE = 64
KEYS_PER_TILE = 16
HEAD_DIM = 512
CHUNKS_PER_ROW = HEAD_DIM // 8  # 16-byte chunks of a bf16 key row
KEY_QUADS = KEYS_PER_TILE // 4
SHARES = 8  # share s: elements 64 s .. + 64 of every key of a tile, one lane's 4 of them
KEYS_BYTES = KEYS_PER_TILE * CHUNKS_PER_ROW * 16  # SharedTiles::keys; SharedTiles::values follows
# WorkgroupShape<heads>: waves of the workgroup and waves of a head group (dim parts; each holds that many blocks).
SHAPES = {64: {"waves": 4, "dim_parts": 4}, 128: {"waves": 8, "dim_parts": 2}}


class Shape:
    """WorkgroupShape<heads> of attention_kernel.h."""

    def __init__(self, heads):
        self.heads = heads
        self.waves = SHAPES[heads]["waves"]
        self.dim_parts = SHAPES[heads]["dim_parts"]
        self.head_groups = self.waves // self.dim_parts
        self.blocks = heads // 16 // self.head_groups
        self.wave_dims = HEAD_DIM // self.dim_parts
        self.wave_chunks = self.wave_dims // 8
        self.wave_reads = self.wave_dims // 32
        self.shares_per_lane = SHARES // self.waves
        self.mfma_per_wave_tile = 2 * self.blocks * self.wave_dims // 16  # QK and PV, 16x16x16 each
        self.weights_offset = 16 * self.waves * (self.blocks - 1) * WAVE  # HeadGroupExchange::weights

    def wave_of(self, group, part):
        return group + self.head_groups * part


def key_chunk_slot(key, chunk):
    """16-byte slot of chunk `chunk` of key row `key` (attention_kernel.h)."""
    return key * CHUNKS_PER_ROW + (chunk ^ (key % 8))


def value_slot(slot):
    """Where 16-byte slot `slot` of the value columns is stored (attention_kernel.h)."""
    return slot ^ (((slot >> 3) & 1) | (((slot >> 6) & 1) << 1))


def value_word(v, quad):
    """8-byte word of value column v, key quad `quad` (attention_kernel.h)."""
    return 2 * value_slot(((v // 32) * KEY_QUADS + quad) * 16 + v % 16) + (v // 16) % 2


def qk_read_slot(first_chunk, lane, p):
    """Key-row slot of QK read p of a lane (attention_kernel.h)."""
    return key_chunk_slot(lane % 16, first_chunk + 4 * p + lane // 16)


def pv_read_slot(first_read, lane, c):
    """Value slot of PV read c of a lane (attention_kernel.h)."""
    return value_slot((first_read + c) * WAVE + lane)


def patterns(wave, heads):
    """{name: (width, [per instruction: 64 byte addresses])} of one wave's LDS accesses in one key tile of a
    workgroup of `heads` heads (WorkgroupShape<heads>)."""
    shape = Shape(heads)
    group, part = wave % shape.head_groups, wave // shape.head_groups
    shares = [wave + shape.waves * i for i in range(shape.shares_per_lane)]
    result = {}

    def add(name, width, count, address):  # address(instruction, lane) -> byte address
        result[name] = (width, [[address(i, lane) for lane in range(WAVE)] for i in range(count)])

    def share(i, lane):  # the lane's dequantized elements [first, + 4) of instruction i's share and key
        first = shares[i // 4] * 64 + lane % 16 * 4
        return first, first // 8, first % 8 // 4, lane // 16, i % 4

    def key_store(i, lane):
        _, chunk, half, quad, key = share(i, lane)
        return 16 * key_chunk_slot(4 * quad + key, chunk) + 8 * half

    def value_store(i, lane):
        first, _, _, quad, element = share(i, lane)
        return KEYS_BYTES + 8 * value_word(first + element, quad)

    def partial_entry(writer, local_block, lane):  # HeadGroupExchange::partial_entry
        return 16 * ((writer * (shape.blocks - 1) + local_block - 1) * WAVE + lane)

    def owner(b):  # the wave that owns local block b of this wave
        return shape.wave_of(group, (part + b) % shape.blocks)

    add("key rows: dequantized stores (b64)", 8, 4 * len(shares), key_store)
    add("value columns: dequantized stores (b64)", 8, 4 * len(shares), value_store)
    add("key rows: QK reads (b128)", 16, shape.wave_reads,
        lambda p, lane: 16 * qk_read_slot(part * shape.wave_chunks, lane, p))
    add("partial scores: writes (b128)", 16, shape.blocks - 1, lambda b, lane: partial_entry(wave, b + 1, lane))
    add("partial scores: reads (b128)", 16, shape.blocks - 1,
        lambda j, lane: partial_entry(owner(j + 1), shape.blocks - j - 1, lane))
    add("P^T and max to the head group: writes (b128)", 16, 1,
        lambda _, lane: shape.weights_offset + 16 * (wave * WAVE + lane))
    add("P^T and max from the owners: reads (b128)", 16, shape.blocks - 1,
        lambda b, lane: shape.weights_offset + 16 * (owner(b + 1) * WAVE + lane))
    add("value columns: PV reads (b128)", 16, shape.wave_reads,
        lambda c, lane: KEYS_BYTES + 16 * pv_read_slot(part * shape.wave_reads, lane, c))
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
    """Per pattern, over the workgroup's waves and one key tile: (instructions a wave, bytes, clocks, factor)."""
    table = {}
    for wave in range(Shape(heads).waves):
        for name, (width, instructions) in patterns(wave, heads).items():
            entry = table.setdefault(name, [len(instructions), 0, 0])
            for addresses in instructions:
                entry[1] += WAVE * width
                entry[2] += clocks(addresses, width)
    return {name: (n, b, c, c / (b / 128)) for name, (n, b, c) in table.items()}
