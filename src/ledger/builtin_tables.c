/* builtin_tables.c — the built-in energy tables, written in the text format
 * (version 1, docs/energy-tables.md) and read by the same parser as a user's
 * file. Each table carries its sources and marks its assumptions in its own
 * comments, so `fewmul` can print one as a starting point for a new table. */

/* Read by table.c, which declares them (there is no other user). */
extern const int fm_energy_builtin_count;
extern const char *const fm_energy_builtin_names[];
extern const char *const fm_energy_builtin_texts[];

/* Index 0 is the default. */
static const char horowitz45[] =
    "fewmul-energy-table 1\n"
    "# Energy at 45 nm, 0.9 V, from M. Horowitz, \"Computing's energy problem (and what we\n"
    "# can do about it)\", ISSCC 2014. The primary paper was not re-read for this table: its\n"
    "# values are those that secondary sources quote from it, three independent ones agreeing\n"
    "# wherever they overlap (see docs/energy-tables.md).\n"
    "# Lines marked ASSUMPTION are not in Horowitz's table; each says how it is derived.\n"
    "name horowitz45\n"
    "source M. Horowitz, Computing's energy problem (and what we can do about it), ISSCC 2014; 45 nm, 0.9 V\n"
    "unit pJ 1e-12\n"
    "\n"
    "# Arithmetic: picojoules per scalar operation.\n"
    "op fmul 3.7            # fp32 multiply (Horowitz)\n"
    "op fadd 0.9            # fp32 add (Horowitz)\n"
    "op fma 4.6             # ASSUMPTION: fp32 multiply + fp32 add; Horowitz lists no fused\n"
    "                       # multiply-add (a fused unit saves one rounding, so this is high)\n"
    "op fspecial 14.8       # ASSUMPTION: divide, sqrt, exp or log = 4 fp32 multiplies; an\n"
    "                       # iterative (Newton-Raphson) divide or sqrt from a table seed needs\n"
    "                       # about 4; exp/log by polynomial need more (~6 FMA = 27.6)\n"
    "op iadd 0.1            # 32-bit integer add (Horowitz)\n"
    "op shift 0.03          # ASSUMPTION: x * 2^k as an add of k to the 8-bit exponent field,\n"
    "                       # priced as Horowitz's 8-bit integer add (0.03)\n"
    "op sign 0.03           # ASSUMPTION: sign flip / abs / select of one word is at most one\n"
    "                       # XOR or mux per bit: priced as the 8-bit add, an upper bound\n"
    "op xnor_popcount 0.004 # ASSUMPTION, per bit pair: 64 pairs = 64 XNOR gates (~21 full-adder\n"
    "                       # equivalents) + a carry-save counter tree (~57 full adders) = ~78\n"
    "                       # adder cells = ~2.5 int32 adds (32 cells, 0.1 pJ) = 0.25 pJ / 64\n"
    "op cmp 0.1             # ASSUMPTION: a compare is a 32-bit subtract = int32 add (0.1)\n"
    "op rand 0.6            # ASSUMPTION: one 32-bit draw of a hardware xorshift32 generator:\n"
    "                       # 3 shifts + 3 XORs, each priced as an int32 add (an upper bound:\n"
    "                       # constant shifts are wiring); 6 x 0.1\n"
    "\n"
    "# Memory, smallest first: capacity, read and write cost of one access of BITS bits.\n"
    "#     name    capacity read write bits\n"
    "level sram8k  8KiB     10   10    64     # 64-bit read, 8 KB SRAM (Horowitz); write = read\n"
    "                                         # is an ASSUMPTION (Horowitz quotes reads)\n"
    "level sram32k 32KiB    20   20    64     # 64-bit read, 32 KB SRAM (Horowitz); write = read\n"
    "                                         # ASSUMPTION\n"
    "level sram1m  1MiB     100  100   64     # 64-bit read, 1 MB SRAM (Horowitz); write = read\n"
    "                                         # ASSUMPTION\n"
    "level dram    inf      1300 1300  64     # 64-bit DRAM access, 1.3-2.6 nJ (Horowitz): the low\n"
    "                                         # end, so communication is not overstated; write =\n"
    "                                         # read ASSUMPTION\n";

static const char eyeriss16[] =
    "fewmul-energy-table 1\n"
    "# Normalized energy: one unit is one multiply-accumulate (MAC) at the ALU. Data movement\n"
    "# from Y.-H. Chen, J. Emer, V. Sze, \"Eyeriss: A Spatial Architecture for Energy-Efficient\n"
    "# Dataflow for Convolutional Neural Networks\", ISCA 2016 (its table of energy cost\n"
    "# normalized to a MAC, extracted from a commercial 65 nm process; Table IV according to\n"
    "# a secondary source), reportedly also in V. Sze, Y.-H. Chen, T.-J. Yang, J. Emer,\n"
    "# \"Efficient Processing of Deep Neural Networks: A Tutorial and Survey\", Proc. IEEE\n"
    "# 105(12), 2017 (not checked):\n"
    "#     ALU (the MAC itself) 1x; register file (0.5-1.0 kB) 1x; inter-PE (NoC) 2x;\n"
    "#     global buffer (100-500 kB) 6x; DRAM 200x.\n"
    "# These ratios were confirmed from secondary sources quoting the paper (course notes\n"
    "# citing it); the primary text was not re-read. The word is 16 bits\n"
    "# (Eyeriss computes in 16-bit fixed point): recalled, not confirmed from the text.\n"
    "# Not physical: joules per unit is 0.\n"
    "name eyeriss16\n"
    "source Chen, Emer, Sze, Eyeriss, ISCA 2016 (65 nm): data movement relative to one MAC; arithmetic derived from the ratios of Horowitz, ISSCC 2014\n"
    "unit MAC 0\n"
    "\n"
    "# Arithmetic. ASSUMPTION (a derivation): Eyeriss prices only the MAC. The ledger's fp32\n"
    "# multiply-add is taken as the one MAC, and every other kind keeps its ratio to the\n"
    "# fp32 multiply-add in the horowitz45 table (4.6 pJ), rounded to 4 significant digits.\n"
    "op fma 1                  # the MAC (Eyeriss's unit)\n"
    "op fmul 0.8043            # 3.7 / 4.6\n"
    "op fadd 0.1957            # 0.9 / 4.6\n"
    "op fspecial 3.217         # 14.8 / 4.6 (horowitz45's 4-multiply assumption)\n"
    "op iadd 0.02174           # 0.1 / 4.6\n"
    "op shift 0.006522         # 0.03 / 4.6 (horowitz45's exponent-add assumption)\n"
    "op sign 0.006522          # 0.03 / 4.6 (horowitz45's assumption)\n"
    "op xnor_popcount 0.0008696 # 0.004 / 4.6 per bit pair (horowitz45's assumption)\n"
    "op cmp 0.02174            # 0.1 / 4.6 (horowitz45's assumption)\n"
    "op rand 0.1304            # 0.6 / 4.6 (horowitz45's xorshift assumption)\n"
    "\n"
    "# Memory, per access of one 16-bit word. Read = write: Eyeriss gives one figure per\n"
    "# level. The inter-PE network (2x) is a path between register files, not a place\n"
    "# that holds a tensor, so it is no level here.\n"
    "#     name   capacity read write bits\n"
    "level rf     1KiB     1    1     16    # register file, 0.5-1.0 kB: capacity ASSUMPTION, the\n"
    "                                       # upper end\n"
    "level buffer 512KiB   6    6     16    # global buffer, 100-500 kB: capacity ASSUMPTION, the\n"
    "                                       # upper end rounded to a power of two\n"
    "level dram   inf      200  200   16    # off-chip DRAM\n";

const char *const fm_energy_builtin_names[] = {"horowitz45", "eyeriss16"};
const char *const fm_energy_builtin_texts[] = {horowitz45, eyeriss16};
const int fm_energy_builtin_count = (int)(sizeof fm_energy_builtin_names / sizeof *fm_energy_builtin_names);
