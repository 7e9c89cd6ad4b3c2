/* load_test_pipelined: uWebSockets' benchmarks/load_test.c, unchanged, with K messages in flight per
 * connection instead of one (our own wrapper; scripts/peers/uws.sh compiles it with the checkout's
 * benchmarks/ directory on the include path, nothing of theirs is kept here).
 *
 *   LOAD_TEST_PIPELINE=K LOAD_TEST_PROBE=1 load_test_pipelined connections host port ssl deflate [payload_size_bytes]
 *
 * load_test sends one masked frame per connection, counts the bytes that come back and sends the
 * next frame when exactly the echo's length has arrived ("ERROR: outstanding bytes negative!" and
 * exit when more arrive: an echo that is not frame for frame, e.g. a frame echoed as two
 * fragments, carries extra header bytes). Here the frame it sends is K copies of that frame back
 * to back in one write, and the expected reply K echoes: the same byte-counting check, over K
 * pipelined messages. Its "Msg/sec" lines then count rounds of K messages (the caller multiplies).
 * The hook: load_test's main() calls us_create_loop() right after building its request, so that
 * call is redirected to replicate the request first.
 *
 * LOAD_TEST_PROBE=1 (for deflate=1, scripts/deflate-bench.sh): load_test expects the echo of its
 * compressed frame to come back uncompressed (its `server_will_compress = 0`: the length of the
 * inflated payload), which only holds for a server that inflates and sends plain frames. Before
 * the run, one blocking connection sends load_test's own upgrade request and one frame, reads the
 * echo frame's header and takes its length as the expected reply: the server's real echo of that
 * (always identical) message, compressed or not. It prints the 101's Sec-WebSocket-Extensions
 * line and "Probe: echo frame N bytes (RSV1 r) for a request of M bytes", or exits with
 * "Probe failed: ..." (no 101, an echo in several frames, a closed connection). */
#define _DEFAULT_SOURCE /* as load_test.c asks, before any header */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <libusockets.h>

struct us_loop_t *pipelined_create_loop(void *hint, void (*wakeup_cb)(struct us_loop_t *),
                                        void (*pre_cb)(struct us_loop_t *), void (*post_cb)(struct us_loop_t *),
                                        unsigned int ext_size);
#define us_create_loop pipelined_create_loop
#undef _DEFAULT_SOURCE /* features.h made it 1; load_test.c defines it again */
#include "load_test.c"
#undef us_create_loop

/* Reads exactly n bytes (blocking); 0 on success. */
static int probe_read(int fd, unsigned char *buf, size_t n) {
    while (n > 0) {
        ssize_t r = read(fd, buf, n);
        if (r <= 0) return -1;
        buf += r;
        n -= (size_t)r;
    }
    return 0;
}

static void probe_fail(const char *what) {
    printf("Probe failed: %s\n", what);
    fflush(stdout);
    exit(1);
}

/* LOAD_TEST_PROBE: sets the expected reply to the length of the server's echo of one request. */
static void probe_echo_length(void) {
    char port[16];
    snprintf(port, sizeof port, "%d", config.port);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(config.host, port, &hints, &ai) != 0 || !ai) probe_fail("cannot resolve the host");
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) probe_fail("cannot connect");
    freeaddrinfo(ai);
    if (write(fd, config.upgrade_request, (size_t)config.upgrade_request_length) != config.upgrade_request_length)
        probe_fail("cannot send the upgrade request");
    /* The response head, byte by byte up to the blank line (nothing follows before our frame). */
    char head[4096];
    size_t h = 0;
    while (h < 4 || memcmp(head + h - 4, "\r\n\r\n", 4) != 0) {
        if (h + 1 >= sizeof head || probe_read(fd, (unsigned char *)head + h, 1) != 0) probe_fail("no complete response");
        h++;
    }
    head[h] = 0;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) probe_fail("no 101 response");
    char *ext = NULL;
    for (char *c = head; *c && !ext; c++)
        if (strncasecmp(c, "\nSec-WebSocket-Extensions:", 26) == 0) ext = c + 1;
    if (ext) printf("Probe: %.*s\n", (int)strcspn(ext, "\r"), ext);
    else printf("Probe: no Sec-WebSocket-Extensions in the 101\n");
    if (write(fd, config.web_socket_request, (size_t)config.web_socket_request_size) != config.web_socket_request_size)
        probe_fail("cannot send the frame");
    unsigned char hdr[10];
    if (probe_read(fd, hdr, 2) != 0) probe_fail("no echo");
    int rsv1 = (hdr[0] & 0x40) != 0, fin = (hdr[0] & 0x80) != 0;
    size_t hl = 2, len = hdr[1] & 0x7f;
    if (len == 126) {
        if (probe_read(fd, hdr + 2, 2) != 0) probe_fail("echo header cut");
        len = ((size_t)hdr[2] << 8) | hdr[3];
        hl = 4;
    } else if (len == 127) {
        if (probe_read(fd, hdr + 2, 8) != 0) probe_fail("echo header cut");
        len = 0;
        for (int i = 2; i < 10; i++) len = (len << 8) | hdr[i];
        hl = 10;
    }
    if (!fin || (hdr[0] & 0x0f) != 2) probe_fail("the echo is not one binary frame");
    unsigned char *payload = malloc(len + 1);
    if (!payload || probe_read(fd, payload, len) != 0) probe_fail("echo payload cut");
    free(payload);
    close(fd);
    int frame = (int)(hl + len);
    printf("Probe: echo frame %d bytes (RSV1 %d) for a request of %d bytes\n", frame, rsv1, config.web_socket_request_size);
    fflush(stdout);
    /* load_test subtracts 4 (the request's masking key) from the expected reply. */
    config.web_socket_request_response_size = frame + 4;
}

struct us_loop_t *pipelined_create_loop(void *hint, void (*wakeup_cb)(struct us_loop_t *),
                                        void (*pre_cb)(struct us_loop_t *), void (*post_cb)(struct us_loop_t *),
                                        unsigned int ext_size) {
    const char *probe = getenv("LOAD_TEST_PROBE");
    if (probe && atoi(probe) == 1) probe_echo_length();
    const char *env = getenv("LOAD_TEST_PIPELINE");
    int k = env ? atoi(env) : 1;
    if (k > 1) {
        int one = config.web_socket_request_size;
        /* Server frames are unmasked: each echo is 4 bytes shorter than the frame sent. load_test
         * subtracts those 4 bytes once from the response size, so K echoes are K * one - 4 * (K - 1). */
        int reply = config.web_socket_request_response_size;
        unsigned char *k_frames = malloc((size_t)one * (size_t)k);
        for (int i = 0; i < k; i++) memcpy(k_frames + (size_t)i * (size_t)one, config.web_socket_request, (size_t)one);
        free(config.web_socket_request);
        config.web_socket_request = k_frames;
        config.web_socket_request_size = one * k;
        config.web_socket_request_response_size = reply * k - 4 * (k - 1);
        printf("Pipelining %d messages per connection (%d bytes per write)\n", k, one * k);
    }
    return us_create_loop(hint, wakeup_cb, pre_cb, post_cb, ext_size);
}
