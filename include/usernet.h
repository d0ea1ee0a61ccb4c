/*
 * usernet: user-mode networking for emulators, as a library.
 *
 * One usernet_t is one virtual LAN: a switch, a gateway (ARP, NDP, DHCPv4,
 * DHCPv6, DNS, TFTP, ping) and a NAT whose TCP, UDP and ping flows become
 * ordinary host sockets, with no privileges. The emulator attaches one or
 * more NICs to it, hands it the frames its guest sends, and gets the
 * guest's frames back through a callback.
 *
 * usernet runs inside the embedder's own event loop and owns no thread:
 *
 *     for (;;) {
 *         int timeout = usernet_timeout(net);           // -1: no timer
 *         poll({usernet_fd(net), POLLIN} + the emulator's own, timeout);
 *         usernet_poll(net);                            // never blocks
 *     }
 *
 * and usernet_nic_input() whenever the guest sends a frame. Every callback
 * is made from inside a usernet_* call on the calling thread. Instances are
 * independent; each must be used from one thread at a time. The library
 * installs no signal handler and writes nothing to stdout or stderr: its
 * messages go to the log callback. It writes to sockets with MSG_NOSIGNAL;
 * a guest forward's command (usernet_add_guestfwd) is a child process the
 * library reaps itself, through a pidfd.
 *
 * C99. All functions return 0 or a pointer on success; on failure -1 or
 * NULL, with a message for usernet_last_error().
 */
#ifndef USERNET_H
#define USERNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USERNET_API_VERSION 2

typedef struct usernet_net usernet_t;
typedef struct usernet_nic usernet_nic_t;

enum usernet_log_level {
    USERNET_LOG_DEBUG = 0,
    USERNET_LOG_INFO = 1,
    USERNET_LOG_WARN = 2,
    USERNET_LOG_ERROR = 3
};

/* A message of the library, one line without its newline. */
typedef void (*usernet_log_fn)(void *opaque, enum usernet_log_level level, const char *msg);

/*
 * The configuration. Call usernet_config_init() first: it sets `size` and
 * `version`, and QEMU's user-networking defaults (10.0.2.0/24, gateway
 * 10.0.2.2, DNS 10.0.2.3, leases from 10.0.2.15; fec0::/64, fec0::2,
 * fec0::3). Addresses are strings ("10.0.2.2"); a NULL string keeps the
 * default.
 * Fields are only ever added at the end, with a higher version.
 */
struct usernet_config {
    uint32_t size;    /* sizeof(struct usernet_config) of the caller */
    uint32_t version; /* USERNET_API_VERSION of the caller */

    const char *network;     /* IPv4 network with prefix, "10.0.2.0/24" */
    const char *gateway;     /* "10.0.2.2" */
    const char *dns;         /* "10.0.2.3" */
    const char *dhcp_start;  /* "10.0.2.15": the first of 16 leases */
    int ipv6;                /* 1 (default): SLAAC, DHCPv6 and NAT66; 0: off */
    const char *prefix6;     /* "fec0::/64" */
    const char *gateway6;    /* "fec0::2" */
    const char *dns6;        /* "fec0::3" */

    const char *domain;      /* DHCP domain name; NULL: none */
    const char *hostname;    /* DHCP host name for the guest; NULL: none */
    const char *const *dns_search; /* NULL-terminated list; NULL: none */
    /* Upstream resolvers ("ADDR", "ADDR:PORT", "[V6]:PORT"), NULL-terminated; NULL:
     * the nameservers of /etc/resolv.conf. */
    const char *const *dns_upstreams;
    const char *tftp_root;   /* directory served by TFTP; NULL: no TFTP */
    const char *bootfile;    /* DHCP boot file name or URL; NULL: none */

    int restrict_guest;      /* 1: guests reach only the gateway's services and forwards */
    int map_gateway_to_loopback; /* 1 (default): the gateway address is the host's loopback */

    usernet_log_fn log;      /* NULL: messages are dropped */
    void *log_opaque;
    enum usernet_log_level log_level; /* default USERNET_LOG_WARN */

    /* Version 2. */
    /* The host addresses the NAT's sockets (guests' TCP, UDP and ping, the DNS
     * forwarder's queries) leave from, as the daemon's --outbound-addr; NULL:
     * the kernel's choice. */
    const char *outbound_addr;   /* an IPv4 address */
    const char *outbound_addr6;  /* an IPv6 address */
    int dhcp_enabled;        /* 1 (default): the DHCPv4 server answers; 0: it does not */
    int dns_enabled;         /* 1 (default): the DNS address answers; 0: it refuses queries */
};

/* Fills the first `size` bytes of *cfg (its size as the caller was built)
 * with the defaults and sets `size` and `version` to match. */
void usernet_config_init_sized(struct usernet_config *cfg, size_t size);
/* The entry point of version 1 of this header, which could not pass its
 * size: it fills version 1's fields only. */
void(usernet_config_init)(struct usernet_config *cfg);
/* Call this one: it passes the size of the structure this program was
 * built with, so a later library never writes past it. */
#define usernet_config_init(cfg) usernet_config_init_sized((cfg), sizeof *(cfg))

/* Creates a LAN. NULL on a bad configuration (usernet_last_error() says
 * which field) or when the host refuses a socket. */
usernet_t *usernet_new(const struct usernet_config *cfg);
void usernet_free(usernet_t *net);

/* The message of the last failure on this thread, "" if none. */
const char *usernet_last_error(void);
/* "usernet 0.1.0". */
const char *usernet_version(void);

/* The event loop's side: a descriptor to poll for input, the milliseconds
 * after which usernet_poll() is due anyway (-1: only when the descriptor
 * is readable; 0: now), and the call that does the work. */
int usernet_fd(const usernet_t *net);
int usernet_timeout(const usernet_t *net);
void usernet_poll(usernet_t *net);

/* A NIC. send() gets each frame for the guest (Ethernet, no FCS); the
 * buffer is valid only during the call. mtu: the guest's IP MTU, 0 for
 * 1500. */
typedef void (*usernet_send_fn)(void *opaque, const void *frame, size_t len);
usernet_nic_t *usernet_nic_new(usernet_t *net, usernet_send_fn send, void *opaque, uint32_t mtu);
void usernet_nic_free(usernet_nic_t *nic);
/* A frame the guest sent. Bad frames are dropped and counted. Called from
 * inside a send callback, the frame is copied and handled just before the
 * outermost usernet_* call returns (at most 256 wait; more are dropped). */
void usernet_nic_input(usernet_nic_t *nic, const void *frame, size_t len);

/* Host-to-guest port forwards. proto: 't' (TCP) or 'u' (UDP). host_addr:
 * the host address to listen on, NULL for every address (IPv4 and IPv6);
 * guest_addr: NULL for the guest holding a DHCP lease, else a guest's
 * address in the network (not its network, broadcast, gateway or DNS
 * address: those fail). */
int usernet_add_hostfwd(usernet_t *net, char proto, const char *host_addr, uint16_t host_port,
                        const char *guest_addr, uint16_t guest_port);
int usernet_remove_hostfwd(usernet_t *net, char proto, const char *host_addr, uint16_t host_port);

/* Guest forwards: TCP connections from the guest to guest_addr:guest_port
 * (an address of the LAN outside the DHCP pool, e.g. "10.0.2.100") go to
 * target: "HOST:PORT", "[V6]:PORT", "unix:PATH" or "cmd:COMMAND" (run by
 * /bin/sh -c per connection, the connection on its stdin and stdout). */
int usernet_add_guestfwd(usernet_t *net, const char *guest_addr, uint16_t guest_port,
                         const char *target);
int usernet_remove_guestfwd(usernet_t *net, const char *guest_addr, uint16_t guest_port);

struct usernet_stats {
    uint64_t rx_frames, rx_bytes; /* from the guests */
    uint64_t tx_frames, tx_bytes; /* to the guests */
    uint64_t dropped;             /* frames refused: malformed, over limits, policy */
    uint64_t tcp_flows, udp_flows, icmp_flows; /* open now */
};
void usernet_get_stats(const usernet_t *net, struct usernet_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* USERNET_H */
