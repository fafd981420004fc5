// The virtual board's main loop: a Verilated design behind a pseudo-terminal or a TCP socket.
//
// Built by ocee.sim.board (sim/board.py) together with the design, which Verilator compiles
// with `--prefix Vboard`, so this file includes "Vboard.h" whatever the design's module is
// called. The design has the ports of ocee's appliance top level:
//
//     clk, rst                           the default clock domain
//     rx__payload[8], rx__valid, rx__ready    bytes from the host (the harness drives valid)
//     tx__payload[8], tx__valid, tx__ready    bytes to the host (the harness drives ready)
//     ready                              the design is out of reset and initialised
//
// It holds rst for a few clocks, clocks until `ready` rises, then opens the pty or the socket
// and prints one line, the URL the host opens (serial:///dev/pts/N or socket://127.0.0.1:PORT),
// on stdout. From then on it clocks the design, offering one queued host byte per clock on rx
// and taking every byte on tx, and moves bytes to and from the host between runs of clocks.
//
// Speed: each clock is two eval() calls and a few loads and stores; the harness looks at the
// wall clock every CLOCKS_PER_CHECK clocks and considers host I/O every IO_INTERVAL_NS. It reads
// when its input queue runs low and writes a full chunk, or as soon as the design pauses (a
// reply is complete), or when a byte has waited OUTPUT_DELAY_NS: few, large system calls while
// streaming, and a reply reaches the host within about IO_INTERVAL_NS of its last byte. After
// IDLE_AFTER_NS without a byte moving anywhere the board goes idle: it sleeps in poll() for up
// to IDLE_POLL_MS between runs of IDLE_RUN_NS of clocking, so an idle board costs about a
// tenth of a core and its clock keeps ticking (the design's timers count clocks) at a tenth
// to a fifth of its busy rate. Any byte in either direction ends the idle state.
//
// SIGUSR1 power-cycles the design: rst is pulsed, host bytes not yet taken are dropped, and the
// harness prints "power cycled" on stdout; the pty or socket stays open.
//
// Exit: SIGTERM or SIGINT; with --once, the TCP client disconnecting; with --watch-stdin, stdin
// reaching end of file (the Python process that started the board holds the other end of the
// pipe, so the board cannot outlive it). A pty stays open across host opens and closes (the
// harness keeps its own descriptor of the slave side). Statistics go to stderr at exit, as one
// line "board stats: clocks=N seconds=S clocks_per_second=R bytes_in=N bytes_out=N" (bytes_in:
// bytes the design took on rx; bytes_out: bytes it gave on tx), which ocee.sim.board parses.
//
// Exit status: 0 after a signal, --once or --watch-stdin; 2 bad arguments; 3 `ready` never rose;
// 1 any other failure (the message on stderr says which).

#include "Vboard.h"
#include "verilated.h"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <vector>

namespace {

constexpr uint64_t RESET_CLOCKS = 4;
constexpr unsigned CLOCKS_PER_CHECK = 64;     // clocks between looks at the wall clock
constexpr int64_t IO_INTERVAL_NS = 20'000;    // busy: host I/O at least this often (latency)
constexpr int64_t WATCH_INTERVAL_NS = 100'000'000;  // busy: look at stdin this often
constexpr int64_t IDLE_AFTER_NS = 20'000'000; // no byte moved for this long: go idle
constexpr int IDLE_POLL_MS = 1;
constexpr int64_t IDLE_RUN_NS = 100'000;      // idle: clocking between two waits
constexpr size_t READ_CHUNK = 1 << 16;
constexpr size_t INPUT_HIGH = 1 << 18;  // queued host bytes above which the host is not read
                                        // (the kernel's buffer then throttles the host)
constexpr size_t OUTPUT_HIGH = 1 << 20; // pending tx bytes above which tx__ready drops
                                        // (a host that does not read stalls the design)
constexpr size_t INPUT_LOW = 1 << 14;   // queued host bytes below which the host is read
constexpr size_t WRITE_AT = 1 << 14;    // pending tx bytes written at once, interval or not
constexpr int64_t OUTPUT_DELAY_NS = 200'000;  // longest wait of a tx byte while the design
                                              // keeps producing (streaming)

volatile sig_atomic_t g_stop = 0;
volatile sig_atomic_t g_power_cycle = 0;

void on_signal(int) { g_stop = 1; }
void on_power_cycle(int) { g_power_cycle = 1; }

int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "board: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

// A FIFO of bytes that is appended at the back and consumed at the front; the consumed prefix
// is dropped when it is more than half of the storage, so the storage stays small and
// contiguous (one read() or write() moves a whole slice).
struct ByteQueue {
    std::vector<uint8_t> data;
    size_t head = 0;

    size_t size() const { return data.size() - head; }
    const uint8_t* front() const { return data.data() + head; }
    void consume(size_t n) {
        head += n;
        if (head == data.size()) {
            data.clear();
            head = 0;
        } else if (head > data.size() / 2) {
            data.erase(data.begin(), data.begin() + ptrdiff_t(head));
            head = 0;
        }
    }
};

class Board {
  public:
    Board() : ctx_(std::make_unique<VerilatedContext>()), top_(std::make_unique<Vboard>(ctx_.get(), "board")) {}

    ~Board() { top_->final(); }

    ByteQueue in;   // host bytes not yet taken by the design
    ByteQueue out;  // design bytes not yet written to the host
    uint64_t clocks = 0;
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;

    void reset() {
        top_->rst = 1;
        run(RESET_CLOCKS);
        top_->rst = 0;
    }

    bool ready() const { return top_->ready; }

    // Power off and on: host bytes not yet taken are lost with the device's state; bytes it
    // has already sent are on their way and still reach the host.
    void power_cycle() {
        in.consume(in.size());
        reset();
    }

    // Run n clocks (Verilator escapes the "__" of Amaranth's port names: rx__valid is the
    // member rx___05Fvalid). One clock: drive the inputs with the clock low and evaluate, which settles
    // the combinational outputs (rx__ready may depend on rx__valid), sample both handshakes, then
    // raise the clock: the design's registers take what was sampled.
    void run(unsigned n) {
        Vboard& t = *top_;
        const bool accept = out.size() < OUTPUT_HIGH;
        t.tx___05Fready = accept;
        for (unsigned i = 0; i < n; ++i) {
            const bool offer = in.head < in.data.size();
            t.rx___05Fvalid = offer;
            if (offer) t.rx___05Fpayload = in.data[in.head];
            t.clk = 0;
            t.eval();
            if (offer && t.rx___05Fready) {
                ++in.head;
                ++bytes_in;
            }
            if (accept && t.tx___05Fvalid) {
                out.data.push_back(t.tx___05Fpayload);
                ++bytes_out;
            }
            t.clk = 1;
            t.eval();
        }
        clocks += n;
        in.consume(0);  // drop the consumed prefix if it has grown
    }

  private:
    std::unique_ptr<VerilatedContext> ctx_;
    std::unique_ptr<Vboard> top_;
};

// Where the host is: a pty master, or a listening socket and at most one accepted connection.
struct Host {
    bool tcp = false;
    bool once = false;
    int listener = -1;
    int fd = -1;       // the pty master or the connection; -1 while no TCP client is connected
    int slave = -1;    // the pty's slave side, held open so the master never sees a hangup
    std::string url;

    void open_pty() {
        fd = posix_openpt(O_RDWR | O_NOCTTY);
        if (fd < 0 || grantpt(fd) != 0 || unlockpt(fd) != 0) fail("creating a pty");
        const char* name = ptsname(fd);
        if (name == nullptr) fail("naming the pty");
        url = std::string("serial://") + name;
        slave = open(name, O_RDWR | O_NOCTTY);
        if (slave < 0) fail("opening the pty's slave side");
        // Raw both ways: no echo, no line editing, no newline translation, every byte value.
        for (int side : {fd, slave}) {
            termios tio;
            if (tcgetattr(side, &tio) != 0) fail("reading the pty's settings");
            cfmakeraw(&tio);
            if (tcsetattr(side, TCSANOW, &tio) != 0) fail("setting the pty raw");
        }
        set_nonblocking(fd);
    }

    void listen_tcp(int port) {
        tcp = true;
        listener = socket(AF_INET, SOCK_STREAM, 0);
        if (listener < 0) fail("creating a socket");
        int one = 1;
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(uint16_t(port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fail("binding the port");
        if (listen(listener, 4) != 0) fail("listening");
        socklen_t len = sizeof addr;
        if (getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) fail("naming the socket");
        url = "socket://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
        set_nonblocking(listener);
    }

    void accept_client() {
        const int conn = accept(listener, nullptr, nullptr);
        if (conn < 0) return;  // EAGAIN: the client went away again
        int one = 1;
        setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // small replies go now
        set_nonblocking(conn);
        fd = conn;
    }

    // The client has gone: bytes the design sends while nobody is connected are lost, as on a
    // UART with nobody listening; host bytes already received are still delivered.
    void disconnect(Board& board) {
        close(fd);
        fd = -1;
        board.out.consume(board.out.size());
        if (once) g_stop = 1;
    }

    // Read what the host has sent (if `read`) and write what the design has produced (if
    // `write`), without blocking. Returns whether a byte moved.
    bool exchange(Board& board, bool read = true, bool write = true) {
        if (fd < 0) return false;
        bool moved = false;
        if (read && board.in.size() < INPUT_HIGH) {
            static uint8_t chunk[READ_CHUNK];  // not read into the queue: resize() would zero it
            const ssize_t n = ::read(fd, chunk, READ_CHUNK);
            if (n > 0) {
                board.in.data.insert(board.in.data.end(), chunk, chunk + n);
                moved = true;
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                if (!tcp) fail("reading the pty");  // cannot happen while the slave is held
                disconnect(board);
                return moved;
            }
        }
        if (write && board.out.size() > 0) {
            const ssize_t n = send_or_write(board.out.front(), board.out.size());
            if (n > 0) {
                board.out.consume(size_t(n));
                moved = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                if (!tcp) fail("writing the pty");
                disconnect(board);
            }
        }
        return moved;
    }

    // Wait up to timeout_ms for the host to be readable (or writable when bytes are pending),
    // for a TCP client to connect, or for stdin to close (when watched).
    void wait(const Board& board, int timeout_ms, bool watch_stdin) {
        pollfd fds[2];
        nfds_t n = 0;
        if (fd >= 0) {
            short events = board.in.size() < INPUT_HIGH ? POLLIN : 0;
            if (board.out.size() > 0) events |= POLLOUT;
            fds[n++] = {fd, events, 0};
        } else {
            fds[n++] = {listener, POLLIN, 0};
        }
        if (watch_stdin) fds[n++] = {STDIN_FILENO, POLLIN, 0};
        if (poll(fds, n, timeout_ms) <= 0) return;  // timeout, or EINTR by a signal
        if (fd < 0 && (fds[0].revents & POLLIN)) accept_client();
        if (watch_stdin && fds[n - 1].revents) check_stdin();
    }

    // Stdin is the end of a pipe whose other end the parent holds: end of file means it is gone.
    static void check_stdin() {
        char buf[256];
        const ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) g_stop = 1;
    }

  private:
    ssize_t send_or_write(const uint8_t* data, size_t size) {
        // send() with MSG_NOSIGNAL: a client that has gone is an EPIPE here, not a SIGPIPE.
        return tcp ? send(fd, data, size, MSG_NOSIGNAL) : write(fd, data, size);
    }

    static void set_nonblocking(int fd) {
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) fail("making a descriptor non-blocking");
    }
};

// Idle: sleep in poll(), clock a little, move bytes; return once a byte has moved.
void idle(Board& board, Host& host, bool watch_stdin) {
    while (!g_stop && !g_power_cycle) {
        host.wait(board, IDLE_POLL_MS, watch_stdin);
        if (host.exchange(board)) return;
        const uint64_t before = board.bytes_in + board.bytes_out;
        const int64_t until = now_ns() + IDLE_RUN_NS;
        do board.run(CLOCKS_PER_CHECK);
        while (now_ns() < until);
        if (board.bytes_in + board.bytes_out != before || host.exchange(board)) return;
    }
}

void serve(Board& board, Host& host, bool watch_stdin) {
    int64_t last_io = now_ns();
    int64_t last_move = last_io;
    int64_t last_watch = last_io;
    uint64_t moved_rtl = 0;
    uint64_t out_seen = 0;  // board.bytes_out at the last I/O round
    int64_t out_since = 0;  // when bytes began to wait for the host (0: none wait)
    while (!g_stop) {
        if (host.fd < 0) {  // TCP, nobody connected: nothing can move until somebody does
            idle(board, host, watch_stdin);
            last_io = last_move = now_ns();
            continue;
        }
        if (g_power_cycle) {
            g_power_cycle = 0;
            board.power_cycle();
            std::printf("power cycled\n");  // what VirtualBoard.power_cycle() waits for
            std::fflush(stdout);
        }
        board.run(CLOCKS_PER_CHECK);
        const int64_t t = now_ns();
        if (board.out.size() > 0 && out_since == 0) out_since = t;
        if (t - last_io >= IO_INTERVAL_NS || board.out.size() >= WRITE_AT) {
            last_io = t;
            // Few, large system calls while streaming, yet no wait for a reply: read when the
            // queue runs low; write a full chunk, or as soon as the design pauses (nothing new
            // since the last round: a reply is complete), or when bytes have waited too long.
            const bool read = board.in.size() < INPUT_LOW;
            const bool paused = board.bytes_out == out_seen;
            const bool write = board.out.size() >= WRITE_AT ||
                               (out_since != 0 && (paused || t - out_since >= OUTPUT_DELAY_NS));
            out_seen = board.bytes_out;
            const uint64_t rtl = board.bytes_in + board.bytes_out;
            if (host.exchange(board, read, write) || rtl != moved_rtl) last_move = t;
            moved_rtl = rtl;
            if (board.out.size() == 0) out_since = 0;
            else if (write) out_since = t;  // the host is slow to read: try again later
        }
        if (watch_stdin && t - last_watch >= WATCH_INTERVAL_NS) {
            last_watch = t;
            pollfd fd{STDIN_FILENO, POLLIN, 0};
            if (poll(&fd, 1, 0) > 0) Host::check_stdin();
        }
        if (t - last_move >= IDLE_AFTER_NS) {
            idle(board, host, watch_stdin);
            last_io = last_move = now_ns();
            moved_rtl = board.bytes_in + board.bytes_out;
            out_since = 0;
        }
    }
}

// --bench: the design alone, fed a counting byte sequence and drained, with no system calls:
// the rate the harness's clocking and handshakes allow, against which serving is compared.
void bench(Board& board, uint64_t clocks) {
    uint8_t next = 0;
    while (board.clocks < clocks && !g_stop) {
        while (board.in.size() < 4096) board.in.data.push_back(next++);
        board.run(1024);
        board.out.consume(board.out.size());
    }
}

[[noreturn]] void usage(const char* message) {
    std::fprintf(stderr,
                 "board: %s\n"
                 "usage: board (--pty | --tcp [--port N] [--once]) [--ready-clocks N] [--watch-stdin]\n"
                 "       board --bench CLOCKS\n",
                 message);
    std::exit(2);
}

uint64_t number(const char* option, const char* text) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') usage((std::string(option) + " needs a number").c_str());
    return value;
}

}  // namespace

int main(int argc, char** argv) {
    bool pty = false, tcp = false, once = false, watch_stdin = false;
    uint64_t port = 0, ready_clocks = 10'000'000, bench_clocks = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--pty") pty = true;
        else if (arg == "--tcp") tcp = true;
        else if (arg == "--once") once = true;
        else if (arg == "--watch-stdin") watch_stdin = true;
        else if (arg == "--port" && has_value) port = number("--port", argv[++i]);
        else if (arg == "--ready-clocks" && has_value) ready_clocks = number("--ready-clocks", argv[++i]);
        else if (arg == "--bench" && has_value) bench_clocks = number("--bench", argv[++i]);
        else usage(("unknown or incomplete argument " + arg).c_str());
    }
    if (int(pty) + int(tcp) + int(bench_clocks > 0) != 1) usage("give one of --pty, --tcp and --bench");
    if (port > 65535) usage("--port must be at most 65535");
    if (once && !tcp) usage("--once applies to --tcp only (a pty stays open)");

    struct sigaction action{};
    action.sa_handler = on_signal;  // no SA_RESTART: a signal ends a poll() at once
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
    action.sa_handler = on_power_cycle;
    sigaction(SIGUSR1, &action, nullptr);
    signal(SIGPIPE, SIG_IGN);

    Board board;
    board.reset();
    while (!board.ready()) {
        if (board.clocks - RESET_CLOCKS >= ready_clocks) {
            std::fprintf(stderr, "board: the design did not raise `ready` within %llu clocks of reset\n",
                         static_cast<unsigned long long>(ready_clocks));
            return 3;
        }
        board.run(1);
    }

    const uint64_t clocks_before = board.clocks;
    const int64_t start = now_ns();
    if (bench_clocks > 0) {
        bench(board, clocks_before + bench_clocks);
    } else {
        Host host;
        host.once = once;
        if (pty) host.open_pty();
        else host.listen_tcp(int(port));
        std::printf("%s\n", host.url.c_str());
        std::fflush(stdout);
        serve(board, host, watch_stdin);
    }
    const double seconds = double(now_ns() - start) / 1e9;
    const uint64_t clocks = board.clocks - clocks_before;
    std::fprintf(stderr, "board stats: clocks=%llu seconds=%.3f clocks_per_second=%.0f bytes_in=%llu bytes_out=%llu\n",
                 static_cast<unsigned long long>(clocks), seconds, seconds > 0 ? double(clocks) / seconds : 0.0,
                 static_cast<unsigned long long>(board.bytes_in), static_cast<unsigned long long>(board.bytes_out));
    return 0;
}
