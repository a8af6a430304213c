// A fast harness for any generated design whose interface is valid/ready streams plus
// configuration inputs: the Verilated top driven from C++, one process for a whole
// session of jobs, commands on stdin and replies on stdout (text lines, beats in hex).
// sim/fast.py writes `harness_ports.h` (the top's class and its ports) and drives it.
//
// Commands (one per line):
//   reset N                 rst high for N cycles (every valid and ready low), then one idle cycle
//   set NAME HEX            a configuration input, applied at the next `run`
//   send STREAM COUNT       then COUNT lines, one beat (hex payload) each, for input STREAM
//   expect STREAM COUNT     output beats to receive from STREAM in the next `run`
//   run SEED STALL MAX      run the job: configuration, one clock edge, then the streams until
//                           every beat went in and every expected beat came out. STALL is the
//                           probability (0..1) that a stream stalls in a cycle (valid or ready
//                           low), drawn from SEED; MAX bounds the cycles.
//   idle N                  N cycles with every output ready and no input; replies `idle K`,
//                           K the output beats that came out (0 for a design that is done)
//   quit
// `run` replies `done CYCLES`, then `last STREAM CYCLE` per input stream (the cycle of its
// last transfer), `recv STREAM COUNT` and COUNT hex lines per output stream, `out NAME HEX`
// per other output, and `end`. Failures reply `fail MESSAGE` (the job is lost; reset).
// CYCLES counts from the first cycle the streams are offered to the last transfer of any
// stream. An input stream stalls only between beats (a beat it offers stays valid until it
// is taken, as sim/streams.py's driver); an output stream may refuse any cycle. After the
// last expected beat, an output that is still valid is an error (a beat too many). A bad
// `set`, `send` or `expect` line is answered with the `fail` of the `run` that follows it.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "verilated.h"
#include "harness_top.h"  // the Verilated top's header and `using Top = ...`

using Words = std::vector<uint32_t>;  // a value, 32 bits a word, least significant first

// Verilator holds a port of up to 64 bits in an integer, a wider one in a VlWide.
template <typename T>
void put(T& port, const Words& w) {
    port = static_cast<T>((w.size() > 0 ? uint64_t{w[0]} : 0) | (w.size() > 1 ? uint64_t{w[1]} << 32 : 0));
}
template <std::size_t N>
void put(VlWide<N>& port, const Words& w) {
    for (std::size_t i = 0; i < N; i++) port[i] = i < w.size() ? w[i] : 0;
}
template <typename T>
Words take(const T& port) {
    uint64_t v = port;
    return sizeof(T) > 4 ? Words{static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)} : Words{static_cast<uint32_t>(v)};
}
template <std::size_t N>
Words take(const VlWide<N>& port) {
    return Words(&port[0], &port[0] + N);
}

struct Stream {
    const char* name;
    void (*set_valid)(Top*, bool);
    void (*set_ready)(Top*, bool);
    void (*set_payload)(Top*, const Words&);
    bool (*valid)(Top*);
    bool (*ready)(Top*);
    Words (*payload)(Top*);
};
struct Output {
    const char* name;
    Words (*get)(Top*);
};

#include "harness_ports.h"  // set_config(), IN_STREAMS, OUT_STREAMS, OTHER_OUTPUTS, N_IN, N_OUT

double sc_time_stamp() { return 0; }

namespace {

Words parse_hex(const std::string& text) {
    Words words;
    for (size_t end = text.size(); end > 0;) {
        size_t begin = end >= 8 ? end - 8 : 0;
        words.push_back(static_cast<uint32_t>(std::stoul(text.substr(begin, end - begin), nullptr, 16)));
        end = begin;
    }
    return words;
}

std::string to_hex(const Words& words) {
    std::string text;
    char buffer[9];
    bool leading = true;
    for (size_t i = words.size(); i-- > 0;) {
        if (leading) {
            if (words[i] == 0 && i) continue;
            std::snprintf(buffer, sizeof buffer, "%x", words[i]);
            leading = false;
        } else {
            std::snprintf(buffer, sizeof buffer, "%08x", words[i]);
        }
        text += buffer;
    }
    return text.empty() ? "0" : text;
}

struct Dice {  // splitmix64: the stalls of one job
    uint64_t state;
    uint64_t next() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    bool stall(double p) { return p > 0 && (next() >> 11) * (1.0 / 9007199254740992.0) < p; }
};

struct Harness {
    Top* top;
    std::vector<std::pair<std::string, Words>> config;
    std::vector<std::vector<Words>> sends = std::vector<std::vector<Words>>(N_IN);
    std::vector<size_t> expects = std::vector<size_t>(N_OUT, 0);
    std::string rejected;  // the first bad line since the last run

    void tick() {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
    }

    void quiet() {
        for (auto& s : IN_STREAMS) s.set_valid(top, false);
        for (auto& s : OUT_STREAMS) s.set_ready(top, false);
    }

    void reset(int cycles) {
        quiet();
        top->rst = 1;
        top->eval();
        for (int i = 0; i < cycles; i++) tick();
        top->rst = 0;
        top->eval();
        tick();
    }

    int find(const Stream* streams, int n, const std::string& name) {
        for (int i = 0; i < n; i++)
            if (name == streams[i].name) return i;
        return -1;
    }

    // One job; false (with a message) on a timeout or a broken stream contract.
    bool run(uint64_t seed, double stall, uint64_t max_cycles, std::string& error) {
        auto inputs = std::move(config);
        config.clear();
        if (!rejected.empty()) {
            error = rejected;
            rejected.clear();
            return false;
        }
        for (auto& [name, value] : inputs)
            if (!set_config(top, name, value)) {
                error = "no configuration input " + name;
                return false;
            }
        quiet();
        top->eval();
        tick();  // the configuration leads the first beat
        Dice dice{seed};
        std::vector<size_t> next(N_IN, 0);
        std::vector<uint64_t> last(N_IN, 0);
        std::vector<bool> offered(N_IN, false);
        std::vector<std::vector<Words>> received(N_OUT);
        std::vector<bool> held(N_OUT, false);
        std::vector<Words> held_payload(N_OUT);
        uint64_t cycle = 0, done_cycle = 0;
        auto pending = [&] {
            for (int i = 0; i < N_IN; i++)
                if (next[i] < sends[i].size()) return true;
            for (int o = 0; o < N_OUT; o++)
                if (received[o].size() < expects[o]) return true;
            return false;
        };
        while (pending()) {
            if (cycle >= max_cycles) {
                std::ostringstream text;
                text << "timeout after " << cycle << " cycles:";
                for (int i = 0; i < N_IN; i++)
                    text << " " << IN_STREAMS[i].name << " " << next[i] << "/" << sends[i].size() << " in";
                for (int o = 0; o < N_OUT; o++)
                    text << " " << OUT_STREAMS[o].name << " " << received[o].size() << "/" << expects[o] << " out";
                error = text.str();
                return false;
            }
            std::vector<bool> taking(N_OUT);
            for (int i = 0; i < N_IN; i++) {
                if (!offered[i]) offered[i] = next[i] < sends[i].size() && !dice.stall(stall);
                IN_STREAMS[i].set_valid(top, offered[i]);
                if (offered[i]) IN_STREAMS[i].set_payload(top, sends[i][next[i]]);
            }
            for (int o = 0; o < N_OUT; o++) {
                taking[o] = received[o].size() < expects[o] && !dice.stall(stall);
                OUT_STREAMS[o].set_ready(top, taking[o]);
            }
            top->eval();
            for (int o = 0; o < N_OUT; o++) {
                bool valid = OUT_STREAMS[o].valid(top);
                if (held[o] && (!valid || OUT_STREAMS[o].payload(top) != held_payload[o])) {
                    error = std::string("stream ") + OUT_STREAMS[o].name + " dropped or changed a refused beat at cycle " +
                            std::to_string(cycle);
                    return false;
                }
                held[o] = valid && !taking[o];
                if (held[o]) held_payload[o] = OUT_STREAMS[o].payload(top);
                if (valid && taking[o]) {
                    received[o].push_back(OUT_STREAMS[o].payload(top));
                    done_cycle = std::max(done_cycle, cycle + 1);
                }
            }
            for (int i = 0; i < N_IN; i++)
                if (offered[i] && IN_STREAMS[i].ready(top)) {
                    next[i]++;
                    last[i] = cycle + 1;
                    done_cycle = std::max(done_cycle, last[i]);
                    offered[i] = false;
                }
            tick();
            cycle++;
        }
        quiet();
        top->eval();
        for (int o = 0; o < N_OUT; o++)
            if (OUT_STREAMS[o].valid(top)) {
                error = std::string("stream ") + OUT_STREAMS[o].name + " has a beat more than the " +
                        std::to_string(expects[o]) + " expected";
                return false;
            }
        std::ostringstream reply;
        reply << "done " << done_cycle << "\n";
        for (int i = 0; i < N_IN; i++) reply << "last " << IN_STREAMS[i].name << " " << last[i] << "\n";
        for (int o = 0; o < N_OUT; o++) {
            reply << "recv " << OUT_STREAMS[o].name << " " << received[o].size() << "\n";
            for (auto& beat : received[o]) reply << to_hex(beat) << "\n";
        }
        for (int x = 0; x < N_OTHER; x++)
            reply << "out " << OTHER_OUTPUTS[x].name << " " << to_hex(OTHER_OUTPUTS[x].get(top)) << "\n";
        reply << "end\n";
        std::cout << reply.str() << std::flush;
        for (auto& s : sends) s.clear();
        for (auto& e : expects) e = 0;
        return true;
    }

    int idle(int cycles) {
        quiet();
        int beats = 0;
        for (int c = 0; c < cycles; c++) {
            for (auto& s : OUT_STREAMS) s.set_ready(top, true);
            top->eval();
            for (auto& s : OUT_STREAMS) beats += s.valid(top);
            tick();
        }
        quiet();
        top->eval();
        return beats;
    }
};

}  // namespace

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    Harness h{new Top};
    h.top->clk = 0;
    h.reset(3);
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream words(line);
        std::string command, name;
        words >> command;
        if (command == "quit") break;
        if (command == "reset") {
            int cycles = 3;
            words >> cycles;
            h.reset(cycles);
            std::cout << "ok" << std::endl;
        } else if (command == "set") {
            std::string value;
            words >> name >> value;
            h.config.emplace_back(name, parse_hex(value));
        } else if (command == "send" || command == "expect") {
            size_t count = 0;
            words >> name >> count;
            bool send = command == "send";
            int index = send ? h.find(IN_STREAMS, N_IN, name) : h.find(OUT_STREAMS, N_OUT, name);
            std::vector<Words> beats;
            for (size_t b = 0; send && b < count && std::getline(std::cin, line); b++) beats.push_back(parse_hex(line));
            if (index < 0) {
                if (h.rejected.empty()) h.rejected = std::string("no ") + (send ? "input" : "output") + " stream " + name;
                continue;
            }
            if (send) h.sends[index] = std::move(beats);
            else h.expects[index] = count;
        } else if (command == "run") {
            uint64_t seed = 1, max_cycles = 1;
            double stall = 0;
            words >> seed >> stall >> max_cycles;
            std::string error;
            if (!h.run(seed, stall, max_cycles, error)) {
                std::cout << "fail " << error << std::endl;
                for (auto& s : h.sends) s.clear();
                for (auto& e : h.expects) e = 0;
                h.config.clear();
            }
        } else if (command == "idle") {
            int cycles = 16;
            words >> cycles;
            std::cout << "idle " << h.idle(cycles) << std::endl;
        } else if (!command.empty() && h.rejected.empty()) {
            h.rejected = "unknown command " + command;
        }
    }
    h.top->final();
    delete h.top;
    return 0;
}
