/*
 * tap_embedder: the smallest emulator there is. It attaches one "NIC" to a
 * usernet LAN through the C API (include/usernet.h); the NIC is a TAP
 * device in a network namespace, so the namespace's kernel plays the guest.
 * This is the loop an emulator writes: poll usernet's descriptor beside its
 * own, call usernet_poll() when either is ready or the timeout passes, hand
 * guest frames to usernet_nic_input(), and write what the send callback
 * gets to the guest.
 *
 *   tap_embedder NETNS [IFNAME] [-t HOSTPORT:GUESTPORT]... [--transmit-on-receive]
 *
 * NETNS is a name under /run/netns (ip netns add) or a path; IFNAME defaults
 * to tap0. usernet's host sockets stay in the namespace the program started
 * in. It runs until SIGINT or SIGTERM.
 *
 * --transmit-on-receive models an emulated NIC whose receive path also
 * transmits (QEMU's pcnet does): the send callback hands usernet the
 * guest's next frame, if one waits, from inside the callback.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <usernet.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* Opens IFNAME as a TAP inside the namespace at ns_path. */
static int open_tap_in(const char *ns_path, const char *ifname) {
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(ns_path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0) {
        fprintf(stderr, "tap_embedder: cannot open namespace %s: %s\n", ns_path, strerror(errno));
        return -1;
    }
    if (setns(target, CLONE_NEWNET) < 0) {
        fprintf(stderr, "tap_embedder: cannot enter %s: %s (needs CAP_SYS_ADMIN)\n", ns_path,
                strerror(errno));
        return -1;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) {
        fprintf(stderr, "tap_embedder: cannot create TAP %s: %s\n", ifname, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    if (setns(self, CLONE_NEWNET) < 0) {
        fprintf(stderr, "tap_embedder: cannot return to our namespace: %s\n", strerror(errno));
        exit(1);
    }
    close(self);
    close(target);
    return fd;
}

struct nic_state {
    int tap;
    usernet_nic_t *nic;
    int transmit_on_receive;
};

/* The NIC's receive path: usernet's frame for the guest. */
static void send_to_guest(void *opaque, const void *frame, size_t len) {
    struct nic_state *s = opaque;
    if (write(s->tap, frame, len) < 0 && errno != EAGAIN) perror("tap_embedder: write");
    if (s->transmit_on_receive && s->nic) {
        static unsigned char next[65536];
        ssize_t n = read(s->tap, next, sizeof next);
        if (n > 0) usernet_nic_input(s->nic, next, (size_t)n);
    }
}

static void log_line(void *opaque, enum usernet_log_level level, const char *msg) {
    (void)opaque;
    fprintf(stderr, "tap_embedder: usernet %s: %s\n",
            level >= USERNET_LOG_WARN ? "warning" : "info", msg);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s NETNS [IFNAME] [-t HOSTPORT:GUESTPORT]... [--transmit-on-receive]\n",
                argv[0]);
        return 2;
    }
    char ns_path[256];
    if (strchr(argv[1], '/')) snprintf(ns_path, sizeof ns_path, "%s", argv[1]);
    else snprintf(ns_path, sizeof ns_path, "/run/netns/%s", argv[1]);
    int argi = 2;
    const char *ifname = "tap0";
    if (argi < argc && argv[argi][0] != '-') ifname = argv[argi++];

    struct usernet_config cfg;
    usernet_config_init(&cfg);
    cfg.log = log_line;
    cfg.log_level = USERNET_LOG_INFO;
    usernet_t *net = usernet_new(&cfg);
    if (!net) {
        fprintf(stderr, "tap_embedder: %s\n", usernet_last_error());
        return 1;
    }
    struct nic_state state = {-1, NULL, 0};
    for (; argi < argc; argi++) {
        if (strcmp(argv[argi], "--transmit-on-receive") == 0) {
            state.transmit_on_receive = 1;
            continue;
        }
        if (strcmp(argv[argi], "-t") != 0 || ++argi == argc) {
            fprintf(stderr, "tap_embedder: unexpected '%s'\n", argv[argi - (argi == argc)]);
            return 2;
        }
        unsigned host, guest;
        if (sscanf(argv[argi], "%u:%u", &host, &guest) != 2 || host == 0 || host > 65535 ||
            guest == 0 || guest > 65535) {
            fprintf(stderr, "tap_embedder: bad forward '%s': give HOSTPORT:GUESTPORT\n", argv[argi]);
            return 2;
        }
        if (usernet_add_hostfwd(net, 't', "127.0.0.1", (uint16_t)host, NULL, (uint16_t)guest) < 0) {
            fprintf(stderr, "tap_embedder: %s\n", usernet_last_error());
            return 1;
        }
    }
    int tap = open_tap_in(ns_path, ifname);
    if (tap < 0) return 1;
    state.tap = tap;
    usernet_nic_t *nic = usernet_nic_new(net, send_to_guest, &state, 1500);
    if (!nic) {
        fprintf(stderr, "tap_embedder: %s\n", usernet_last_error());
        return 1;
    }
    state.nic = nic;
    /* SIGINT and SIGTERM are blocked except inside ppoll(), so that one
     * arriving between the check of `stop` and the wait still ends it. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block, during_wait;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &during_wait);
    fprintf(stderr, "tap_embedder: %s on %s in %s\n", usernet_version(), ifname, ns_path);

    static unsigned char frame[65536];
    while (!stop) {
        struct pollfd fds[2] = {{tap, POLLIN, 0}, {usernet_fd(net), POLLIN, 0}};
        int ms = usernet_timeout(net);
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        if (ppoll(fds, 2, ms < 0 ? NULL : &ts, &during_wait) < 0 && errno != EINTR) {
            perror("tap_embedder: ppoll");
            break;
        }
        if (fds[0].revents & POLLIN) {
            for (int i = 0; i < 64; i++) { /* a batch of the guest's frames */
                ssize_t n = read(tap, frame, sizeof frame);
                if (n <= 0) break;
                usernet_nic_input(nic, frame, (size_t)n);
            }
        }
        usernet_poll(net);
    }
    struct usernet_stats st;
    usernet_get_stats(net, &st);
    fprintf(stderr, "tap_embedder: %llu frames in, %llu out, %llu dropped\n",
            (unsigned long long)st.rx_frames, (unsigned long long)st.tx_frames,
            (unsigned long long)st.dropped);
    state.nic = NULL;
    usernet_nic_free(nic);
    usernet_free(net);
    close(tap);
    return 0;
}
