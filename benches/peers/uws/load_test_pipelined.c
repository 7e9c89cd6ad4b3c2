/* load_test_pipelined: uWebSockets' benchmarks/load_test.c, unchanged, with K messages in flight per
 * connection instead of one (our own wrapper; scripts/peers/uws.sh compiles it with the checkout's
 * benchmarks/ directory on the include path, nothing of theirs is kept here).
 *
 *   LOAD_TEST_PIPELINE=K load_test_pipelined connections host port ssl deflate [payload_size_bytes]
 *
 * load_test sends one masked frame per connection, counts the bytes that come back and sends the
 * next frame when exactly the echo's length has arrived ("ERROR: outstanding bytes negative!" and
 * exit when more arrive: an echo that is not frame for frame, e.g. a frame echoed as two
 * fragments, carries extra header bytes). Here the frame it sends is K copies of that frame back
 * to back in one write, and the expected reply K echoes: the same byte-counting check, over K
 * pipelined messages. Its "Msg/sec" lines then count rounds of K messages (the caller multiplies).
 * The hook: load_test's main() calls us_create_loop() right after building its request, so that
 * call is redirected to replicate the request first. */
#define _DEFAULT_SOURCE /* as load_test.c asks, before any header */
#include <stdlib.h>
#include <string.h>
#include <libusockets.h>

struct us_loop_t *pipelined_create_loop(void *hint, void (*wakeup_cb)(struct us_loop_t *),
                                        void (*pre_cb)(struct us_loop_t *), void (*post_cb)(struct us_loop_t *),
                                        unsigned int ext_size);
#define us_create_loop pipelined_create_loop
#undef _DEFAULT_SOURCE /* features.h made it 1; load_test.c defines it again */
#include "load_test.c"
#undef us_create_loop

struct us_loop_t *pipelined_create_loop(void *hint, void (*wakeup_cb)(struct us_loop_t *),
                                        void (*pre_cb)(struct us_loop_t *), void (*post_cb)(struct us_loop_t *),
                                        unsigned int ext_size) {
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
