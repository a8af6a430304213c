// A simulated board: the Verilated accelerator top with its UART pins wired to a
// pseudo-terminal, so the host driver opens it like a serial port.
//
// Usage: <binary> <cycles per bit> [<ber to board> <drop to board> <ber to host> <drop to host> <seed>]
// Prints the pseudo-terminal's path on stdout, then runs until killed or until stdin
// closes (the parent went away). Bytes written to the terminal go into the top's `rx`
// pin as 8N1 frames of <cycles per bit> clock cycles a bit; 8N1 frames on `tx` are
// sampled in their bits' middles and written back to the terminal.
//
// Line faults (all zero by default): on the way to the board and on the way to the host
// separately, each data bit of a byte is flipped with probability <ber> and each byte is
// dropped with probability <drop>, drawn from a generator per direction seeded from
// <seed> (so each direction's faults depend only on its own byte count). When stdin
// closes, one line of counts is printed on stdout:
//   faults to_board <bytes> <bytes flipped> <bits flipped> <dropped> to_host <...same four> cycles <n>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include "verilated.h"
#include "board_top.h"  // the Verilated top's header and TOP_CLASS, written by sim/board_sim.py

// One direction of the line: its fault rates, its random generator and its counts.
struct Line {
    double ber = 0, drop = 0;
    uint64_t state = 0;
    unsigned long bytes = 0, flipped = 0, bits = 0, dropped = 0;

    uint64_t next() {  // splitmix64
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
    // Passes one byte through the line: false if it is dropped, else `byte` possibly flipped.
    bool pass(unsigned char& byte) {
        bytes++;
        if (drop > 0 && uniform() < drop) {
            dropped++;
            return false;
        }
        if (ber > 0) {
            unsigned char mask = 0;
            for (int b = 0; b < 8; b++)
                if (uniform() < ber) mask |= 1u << b;
            if (mask) {
                flipped++;
                bits += __builtin_popcount(mask);
                byte ^= mask;
            }
        }
        return true;
    }
};

int main(int argc, char** argv) {
    if (argc != 2 && argc != 7) {
        std::fprintf(stderr, "usage: %s <cycles per bit> [<ber to board> <drop to board> <ber to host> "
                             "<drop to host> <seed>]\n", argv[0]);
        return 2;
    }
    const long divisor = std::atol(argv[1]);
    Line to_board_line, to_host_line;
    if (argc == 7) {
        to_board_line.ber = std::atof(argv[2]);
        to_board_line.drop = std::atof(argv[3]);
        to_host_line.ber = std::atof(argv[4]);
        to_host_line.drop = std::atof(argv[5]);
        const uint64_t seed = std::strtoull(argv[6], nullptr, 10);
        to_board_line.state = seed * 2 + 1;
        to_host_line.state = seed * 2 + 2;
    }
    Verilated::commandArgs(argc, argv);

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) {
        std::perror("posix_openpt");
        return 1;
    }
    const char* slave_path = ptsname(master);
    // Keep the slave open (a master read fails with EIO while no slave is open) and raw.
    int slave = open(slave_path, O_RDWR | O_NOCTTY);
    struct termios tio;
    tcgetattr(slave, &tio);
    cfmakeraw(&tio);
    tcsetattr(slave, TCSANOW, &tio);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    std::printf("%s\n", slave_path);
    std::fflush(stdout);

    TOP_CLASS top;
    top.clk = 0;
    top.rst = 1;
    top.rx = 1;
    for (int i = 0; i < 8; i++) {
        top.clk = !top.clk;
        top.eval();
    }
    top.rst = 0;

    std::deque<unsigned char> to_board;
    long rx_timer = 0;      // cycles left in the bit being driven on rx
    int rx_bit = -1;        // -1 idle, 0 start, 1..8 data, 9 stop
    unsigned char rx_byte = 0;
    long tx_timer = 0;      // cycles to the next sample of tx
    int tx_bit = -1;        // -1 idle, 0 start, 1..8 data, 9 stop
    unsigned tx_byte = 0;
    unsigned long cycle = 0;
    for (;; cycle++) {
        if ((cycle & 1023) == 0) {
            unsigned char buffer[4096];
            if (to_board.size() < sizeof buffer) {
                ssize_t got = read(master, buffer, sizeof buffer);
                for (ssize_t i = 0; i < got; i++)
                    if (to_board_line.pass(buffer[i])) to_board.push_back(buffer[i]);
            }
            char probe;
            ssize_t parent = read(STDIN_FILENO, &probe, 1);
            if (parent == 0) break;                       // stdin closed: the parent is gone
        }
        // host -> board
        if (rx_bit < 0 && !to_board.empty()) {
            rx_byte = to_board.front();
            to_board.pop_front();
            rx_bit = 0;
            rx_timer = divisor;
        }
        if (rx_bit >= 0) {
            top.rx = rx_bit == 0 ? 0 : rx_bit == 9 ? 1 : (rx_byte >> (rx_bit - 1)) & 1;
            if (--rx_timer == 0) {
                rx_timer = divisor;
                if (++rx_bit == 10) rx_bit = -1;
            }
        } else {
            top.rx = 1;
        }
        // board -> host
        if (tx_bit < 0) {
            if (!top.tx) {
                tx_bit = 0;
                tx_timer = divisor / 2;
            }
        } else if (--tx_timer == 0) {
            tx_timer = divisor;
            if (tx_bit >= 1 && tx_bit <= 8) tx_byte |= (unsigned)top.tx << (tx_bit - 1);
            if (tx_bit == 9) {
                unsigned char out = (unsigned char)tx_byte;
                if (to_host_line.pass(out))
                    while (write(master, &out, 1) < 0 && errno == EAGAIN) usleep(100);
                tx_byte = 0;
                tx_bit = -1;
            } else {
                tx_bit++;
            }
        }
        top.clk = 1;
        top.eval();
        top.clk = 0;
        top.eval();
    }
    top.final();
    std::printf("faults to_board %lu %lu %lu %lu to_host %lu %lu %lu %lu cycles %lu\n", to_board_line.bytes,
                to_board_line.flipped, to_board_line.bits, to_board_line.dropped, to_host_line.bytes,
                to_host_line.flipped, to_host_line.bits, to_host_line.dropped, cycle);
    std::fflush(stdout);
    close(slave);
    close(master);
    return 0;
}
