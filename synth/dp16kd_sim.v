// A behavioural model of the ECP5 DP16KD block RAM, for simulating yosys's ECP5 netlists.
//
// yosys's own DP16KD (share/ecp5/cells_sim.v) is a black box with no behaviour, so a netlist
// that maps a block RAM could not be simulated at all; synth/netlist.py drops it from the
// cell models and builds this one in its place. It models what yosys's block-RAM rules
// (share/lattice/brams_16kd.txt and brams_map_16kd.v) rely on and what the flow's
// output-register pass (synth/ecp5_bram.py) sets:
//
// * DATA_WIDTH 1, 2, 4, 9, 18 on either port (true dual port), and 36 on port A with port B
//   reading 1 to 36 bits (the pseudo dual port: A writes {DIB, DIA}, a 36-bit read returns
//   {DOB, DOA}, a narrower one DOB). The word address is AD[13:s] with s = 0, 1, 2, 3, 4, 5
//   for widths 1, 2, 4, 9, 18, 36; at 18 bits AD[1:0], at 36 bits ADA[3:0] are the write's
//   byte enables (9-bit bytes, WE must be high as well).
// * One array of 1024 rows of 18 bits (INITVAL_xx holds rows 16xx to 16xx+15, 20 bits a row,
//   the top two unused). Widths 9 to 36 use every bit; widths 1 to 4 skip the ninth bit of
//   each 9-bit byte, as yosys's rules assume.
// * CE gates a port's read and write; WE writes; WRITEMODE NORMAL keeps the port's read data
//   during a write, WRITETHROUGH shows the new word, READBEFOREWRITE the old one. A read on
//   one port of the word the other port writes at the same edge returns the old word
//   (the hardware does not define it; yosys never relies on it).
// * REGMODE NOREG: DO is the read data latched at the clock edge. OUTREG: DO is a register
//   that loads that latch when OCE is high, one cycle later. In the pseudo dual port both
//   halves of a 36-bit read are clocked and enabled by port B (CLKB, CEB); the DOA half's
//   output register loads on OCEA, the DOB half's on OCEB (the flow's pass sets both alike).
// * RST with RESETMODE SYNC clears the read data at the clock edge whatever CE is and
//   blocks that port's write; ASYNC clears it at once and writes go on. A reset while
//   REGMODE is OUTREG, CSDECODE other than 0b000, and other pin inversions than
//   CLKAMUX/CLKBMUX "INV" are not modelled: the model stops the simulation with a message
//   rather than guess.
// * GSR, WID and INIT_DATA are accepted and ignored; the read data power up at 0.
module DP16KD(
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
  input CEA, OCEA, CLKA, WEA, RSTA,
  input CSA2, CSA1, CSA0,
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
  input CEB, OCEB, CLKB, WEB, RSTB,
  input CSB2, CSB1, CSB0,
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);

  parameter DATA_WIDTH_A = 18, DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG", REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC", ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000", CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL", WRITEMODE_B = "NORMAL";
  parameter DIA17MUX = "DIA17", DIA16MUX = "DIA16", DIA15MUX = "DIA15", DIA14MUX = "DIA14", DIA13MUX = "DIA13", DIA12MUX = "DIA12";
  parameter DIA11MUX = "DIA11", DIA10MUX = "DIA10", DIA9MUX = "DIA9", DIA8MUX = "DIA8", DIA7MUX = "DIA7", DIA6MUX = "DIA6";
  parameter DIA5MUX = "DIA5", DIA4MUX = "DIA4", DIA3MUX = "DIA3", DIA2MUX = "DIA2", DIA1MUX = "DIA1", DIA0MUX = "DIA0";
  parameter ADA13MUX = "ADA13", ADA12MUX = "ADA12", ADA11MUX = "ADA11", ADA10MUX = "ADA10", ADA9MUX = "ADA9", ADA8MUX = "ADA8";
  parameter ADA7MUX = "ADA7", ADA6MUX = "ADA6", ADA5MUX = "ADA5", ADA4MUX = "ADA4", ADA3MUX = "ADA3", ADA2MUX = "ADA2";
  parameter ADA1MUX = "ADA1", ADA0MUX = "ADA0", CEAMUX = "CEA", OCEAMUX = "OCEA", CLKAMUX = "CLKA", WEAMUX = "WEA";
  parameter RSTAMUX = "RSTA", CSA2MUX = "CSA2", CSA1MUX = "CSA1", CSA0MUX = "CSA0", DOA17MUX = "DOA17", DOA16MUX = "DOA16";
  parameter DOA15MUX = "DOA15", DOA14MUX = "DOA14", DOA13MUX = "DOA13", DOA12MUX = "DOA12", DOA11MUX = "DOA11", DOA10MUX = "DOA10";
  parameter DOA9MUX = "DOA9", DOA8MUX = "DOA8", DOA7MUX = "DOA7", DOA6MUX = "DOA6", DOA5MUX = "DOA5", DOA4MUX = "DOA4";
  parameter DOA3MUX = "DOA3", DOA2MUX = "DOA2", DOA1MUX = "DOA1", DOA0MUX = "DOA0";
  parameter DIB17MUX = "DIB17", DIB16MUX = "DIB16", DIB15MUX = "DIB15", DIB14MUX = "DIB14", DIB13MUX = "DIB13", DIB12MUX = "DIB12";
  parameter DIB11MUX = "DIB11", DIB10MUX = "DIB10", DIB9MUX = "DIB9", DIB8MUX = "DIB8", DIB7MUX = "DIB7", DIB6MUX = "DIB6";
  parameter DIB5MUX = "DIB5", DIB4MUX = "DIB4", DIB3MUX = "DIB3", DIB2MUX = "DIB2", DIB1MUX = "DIB1", DIB0MUX = "DIB0";
  parameter ADB13MUX = "ADB13", ADB12MUX = "ADB12", ADB11MUX = "ADB11", ADB10MUX = "ADB10", ADB9MUX = "ADB9", ADB8MUX = "ADB8";
  parameter ADB7MUX = "ADB7", ADB6MUX = "ADB6", ADB5MUX = "ADB5", ADB4MUX = "ADB4", ADB3MUX = "ADB3", ADB2MUX = "ADB2";
  parameter ADB1MUX = "ADB1", ADB0MUX = "ADB0", CEBMUX = "CEB", OCEBMUX = "OCEB", CLKBMUX = "CLKB", WEBMUX = "WEB";
  parameter RSTBMUX = "RSTB", CSB2MUX = "CSB2", CSB1MUX = "CSB1", CSB0MUX = "CSB0", DOB17MUX = "DOB17", DOB16MUX = "DOB16";
  parameter DOB15MUX = "DOB15", DOB14MUX = "DOB14", DOB13MUX = "DOB13", DOB12MUX = "DOB12", DOB11MUX = "DOB11", DOB10MUX = "DOB10";
  parameter DOB9MUX = "DOB9", DOB8MUX = "DOB8", DOB7MUX = "DOB7", DOB6MUX = "DOB6", DOB5MUX = "DOB5", DOB4MUX = "DOB4";
  parameter DOB3MUX = "DOB3", DOB2MUX = "DOB2", DOB1MUX = "DOB1", DOB0MUX = "DOB0";
  parameter INITVAL_00 = 320'h0, INITVAL_01 = 320'h0, INITVAL_02 = 320'h0, INITVAL_03 = 320'h0;
  parameter INITVAL_04 = 320'h0, INITVAL_05 = 320'h0, INITVAL_06 = 320'h0, INITVAL_07 = 320'h0;
  parameter INITVAL_08 = 320'h0, INITVAL_09 = 320'h0, INITVAL_0A = 320'h0, INITVAL_0B = 320'h0;
  parameter INITVAL_0C = 320'h0, INITVAL_0D = 320'h0, INITVAL_0E = 320'h0, INITVAL_0F = 320'h0;
  parameter INITVAL_10 = 320'h0, INITVAL_11 = 320'h0, INITVAL_12 = 320'h0, INITVAL_13 = 320'h0;
  parameter INITVAL_14 = 320'h0, INITVAL_15 = 320'h0, INITVAL_16 = 320'h0, INITVAL_17 = 320'h0;
  parameter INITVAL_18 = 320'h0, INITVAL_19 = 320'h0, INITVAL_1A = 320'h0, INITVAL_1B = 320'h0;
  parameter INITVAL_1C = 320'h0, INITVAL_1D = 320'h0, INITVAL_1E = 320'h0, INITVAL_1F = 320'h0;
  parameter INITVAL_20 = 320'h0, INITVAL_21 = 320'h0, INITVAL_22 = 320'h0, INITVAL_23 = 320'h0;
  parameter INITVAL_24 = 320'h0, INITVAL_25 = 320'h0, INITVAL_26 = 320'h0, INITVAL_27 = 320'h0;
  parameter INITVAL_28 = 320'h0, INITVAL_29 = 320'h0, INITVAL_2A = 320'h0, INITVAL_2B = 320'h0;
  parameter INITVAL_2C = 320'h0, INITVAL_2D = 320'h0, INITVAL_2E = 320'h0, INITVAL_2F = 320'h0;
  parameter INITVAL_30 = 320'h0, INITVAL_31 = 320'h0, INITVAL_32 = 320'h0, INITVAL_33 = 320'h0;
  parameter INITVAL_34 = 320'h0, INITVAL_35 = 320'h0, INITVAL_36 = 320'h0, INITVAL_37 = 320'h0;
  parameter INITVAL_38 = 320'h0, INITVAL_39 = 320'h0, INITVAL_3A = 320'h0, INITVAL_3B = 320'h0;
  parameter INITVAL_3C = 320'h0, INITVAL_3D = 320'h0, INITVAL_3E = 320'h0, INITVAL_3F = 320'h0;
  localparam [64*320-1:0] INIT = {INITVAL_3F, INITVAL_3E, INITVAL_3D, INITVAL_3C, INITVAL_3B, INITVAL_3A, INITVAL_39, INITVAL_38, INITVAL_37, INITVAL_36, INITVAL_35, INITVAL_34, INITVAL_33, INITVAL_32, INITVAL_31, INITVAL_30, INITVAL_2F, INITVAL_2E, INITVAL_2D, INITVAL_2C, INITVAL_2B, INITVAL_2A, INITVAL_29, INITVAL_28, INITVAL_27, INITVAL_26, INITVAL_25, INITVAL_24, INITVAL_23, INITVAL_22, INITVAL_21, INITVAL_20, INITVAL_1F, INITVAL_1E, INITVAL_1D, INITVAL_1C, INITVAL_1B, INITVAL_1A, INITVAL_19, INITVAL_18, INITVAL_17, INITVAL_16, INITVAL_15, INITVAL_14, INITVAL_13, INITVAL_12, INITVAL_11, INITVAL_10, INITVAL_0F, INITVAL_0E, INITVAL_0D, INITVAL_0C, INITVAL_0B, INITVAL_0A, INITVAL_09, INITVAL_08, INITVAL_07, INITVAL_06, INITVAL_05, INITVAL_04, INITVAL_03, INITVAL_02, INITVAL_01, INITVAL_00};
  parameter WID = 0;
  parameter GSR = "ENABLED";
  parameter INIT_DATA = "STATIC";

  localparam PDP = DATA_WIDTH_A == 36;          // pseudo dual port: A writes 36 bits, B reads
  localparam READ36 = PDP && DATA_WIDTH_B == 36;

  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
  wire clka = CLKAMUX == "INV" ? ~CLKA : CLKA;
  wire clkb = CLKBMUX == "INV" ? ~CLKB : CLKB;
  wire sela = {CSA2, CSA1, CSA0} == 3'b000;
  wire selb = {CSB2, CSB1, CSB0} == 3'b000;
  wire async_rsta = RESETMODE == "ASYNC" && RSTA;
  wire async_rstb = RESETMODE == "ASYNC" && RSTB;
  wire sync_rsta = RESETMODE == "SYNC" && RSTA;
  wire sync_rstb = RESETMODE == "SYNC" && RSTB;

  // Both ports write the array, each on its own clock.
  // verilator lint_off MULTIDRIVEN
  reg mem [0:18431];
  // verilator lint_on MULTIDRIVEN
  reg [17:0] lat_a = 0, lat_b = 0, out_a = 0, out_b = 0;     // read data; output registers
  reg [35:0] lat_36 = 0;                                      // a 36-bit read's data

  // The word address of address pins `ad` at `width`.
  function automatic integer word(input integer width, input [13:0] ad);
    word = width == 36 ? ad[13:5] : width == 18 ? ad[13:4] : width == 9 ? ad[13:3]
         : width == 4 ? ad[13:2] : width == 2 ? ad[13:1] : ad;
  endfunction

  // The array bit that holds bit `k` of word `n` at `width`.
  function automatic integer place(input integer width, input integer n, input integer k);
    integer j;
    begin
      j = width * n + k;
      place = width >= 9 ? j : 9 * (j / 8) + j % 8;
    end
  endfunction

  // The bytes a write at `width` changes (9-bit bytes; one for widths below 18).
  function automatic [3:0] enables(input integer width, input [13:0] ad);
    enables = width == 36 ? ad[3:0] : width == 18 ? {2'b00, ad[1:0]} : 4'b1111;
  endfunction

  function automatic [35:0] read_word(input integer width, input [13:0] ad);
    integer k;
    begin
      read_word = 0;
      for (k = 0; k < width; k = k + 1) read_word[k] = mem[place(width, word(width, ad), k)];
    end
  endfunction

  // The word `old_word` after a write of `data` with the byte enables of address pins `ad`
  // (the new word WRITETHROUGH shows).
  function automatic [35:0] merged(input integer width, input [13:0] ad, input [35:0] old_word,
                                   input [35:0] data);
    integer k;
    reg [3:0] be;
    begin
      merged = old_word;
      be = enables(width, ad);
      for (k = 0; k < width; k = k + 1) if (be[k / 9]) merged[k] = data[k];
    end
  endfunction

  // Write `data` at address pins `ad`: the enabled bytes, non-blocking (a read at the same
  // edge sees the word from before).
  task automatic write_word(input integer width, input [13:0] ad, input [35:0] data);
    integer k;
    reg [3:0] be;
    begin
      be = enables(width, ad);
      for (k = 0; k < width; k = k + 1) if (be[k / 9]) mem[place(width, word(width, ad), k)] <= data[k];
    end
  endtask

  integer r, k;
  initial begin
    if (!(DATA_WIDTH_A == 1 || DATA_WIDTH_A == 2 || DATA_WIDTH_A == 4 || DATA_WIDTH_A == 9 || DATA_WIDTH_A == 18
          || DATA_WIDTH_A == 36))
      $fatal(1, "DP16KD model %m: DATA_WIDTH_A %0d is not 1, 2, 4, 9, 18 or 36", DATA_WIDTH_A);
    if (!(DATA_WIDTH_B == 1 || DATA_WIDTH_B == 2 || DATA_WIDTH_B == 4 || DATA_WIDTH_B == 9 || DATA_WIDTH_B == 18
          || (PDP && DATA_WIDTH_B == 36)))
      $fatal(1, "DP16KD model %m: DATA_WIDTH_B %0d is not 1, 2, 4, 9, 18, or 36 with DATA_WIDTH_A 36", DATA_WIDTH_B);
    if (CSDECODE_A != "0b000" || CSDECODE_B != "0b000")
      $fatal(1, "DP16KD model %m: CSDECODE other than 0b000 is not modelled");
    if ((CLKAMUX != "CLKA" && CLKAMUX != "INV") || (CLKBMUX != "CLKB" && CLKBMUX != "INV")
        || CEAMUX != "CEA" || CEBMUX != "CEB" || OCEAMUX != "OCEA" || OCEBMUX != "OCEB"
        || WEAMUX != "WEA" || WEBMUX != "WEB" || RSTAMUX != "RSTA" || RSTBMUX != "RSTB")
      $fatal(1, "DP16KD model %m: an inverted control pin is not modelled (only CLKAMUX/CLKBMUX INV)");
    for (r = 0; r < 1024; r = r + 1)
      for (k = 0; k < 18; k = k + 1) mem[18 * r + k] = INIT[20 * r + k];
  end

  // Writes: port A (18 bits or fewer, or the pseudo dual port's 36) and port B (true dual
  // port only). A synchronous read reset blocks its port's write; an asynchronous one not.
  always @(posedge clka)
    if (CEA && sela && WEA && !sync_rsta) write_word(DATA_WIDTH_A, ada, PDP ? {dib, dia} : {18'b0, dia});

  always @(posedge clkb)
    if (!PDP && CEB && selb && WEB && !sync_rstb) write_word(DATA_WIDTH_B, adb, {18'b0, dib});

  // Reads: the data each port latches at its clock edge (DO with NOREG). The array's
  // writes are non-blocking, so a read sees the word from before this edge's writes.
  always @(posedge clka or posedge async_rsta) begin : port_a_read
    reg [35:0] old_word, new_word;
    if (async_rsta || sync_rsta) lat_a <= 0;
    else if (!PDP && CEA && sela) begin
      old_word = read_word(DATA_WIDTH_A, ada);
      if (!WEA || WRITEMODE_A == "READBEFOREWRITE") lat_a <= old_word[17:0];
      else if (WRITEMODE_A == "WRITETHROUGH") begin
        new_word = merged(DATA_WIDTH_A, ada, old_word, {18'b0, dia});
        lat_a <= new_word[17:0];
      end
    end
  end

  always @(posedge clkb or posedge async_rstb) begin : port_b_read
    reg [35:0] old_word, new_word;
    if (async_rstb || sync_rstb) begin
      lat_b <= 0;
      lat_36 <= 0;
    end else if (CEB && selb) begin
      old_word = read_word(DATA_WIDTH_B, adb);
      if (READ36) lat_36 <= old_word;
      else if (PDP || !WEB || WRITEMODE_B == "READBEFOREWRITE") lat_b <= old_word[17:0];
      else if (WRITEMODE_B == "WRITETHROUGH") begin
        new_word = merged(DATA_WIDTH_B, adb, old_word, {18'b0, dib});
        lat_b <= new_word[17:0];
      end
    end
  end

  wire [17:0] read_a = READ36 ? lat_36[17:0] : lat_a;
  wire [17:0] read_b = READ36 ? lat_36[35:18] : lat_b;
  wire outreg_a = REGMODE_A == "OUTREG", outreg_b = REGMODE_B == "OUTREG";
  wire clk_out_a = PDP ? clkb : clka;

  // The output registers: the read port's clock; the DOA half of a 36-bit read is port B's.
  always @(posedge clk_out_a) begin
    if (outreg_a && (PDP ? RSTB : RSTA))
      $fatal(1, "DP16KD model %m: a reset with REGMODE_A OUTREG is not modelled");
    if (OCEA) out_a <= read_a;
  end
  always @(posedge clkb) begin
    if (outreg_b && RSTB) $fatal(1, "DP16KD model %m: a reset with REGMODE_B OUTREG is not modelled");
    if (OCEB) out_b <= read_b;
  end

  wire [17:0] doa = outreg_a ? out_a : read_a;
  wire [17:0] dob = outreg_b ? out_b : read_b;
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = doa;
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
endmodule
