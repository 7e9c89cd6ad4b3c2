// uws-echo: a WebSocket echo server on uWebSockets, for scripts/compare.sh (our own code, compiled
// against a uWebSockets checkout by scripts/peers/uws.sh; no uWebSockets source is kept here).
//
//   uws-echo [--listen HOST:PORT] [--compression off|shared|dedicated] [--compress-echo]
//            [--tls-cert PATH --tls-key PATH [--tls-low-memory]]
//                                      default 127.0.0.1:9004, compression off, no TLS
//
// The same service as wsecho and the other peers: one thread, every text and binary message sent
// back with its opcode (uWebSockets hands over whole messages; an unfragmented frame comes back as
// one frame of the same length), pings answered and closes echoed by the library, compression
// off, 16 MiB largest message (wsecho's default).
//
// Compression (scripts/deflate-bench.sh): --compression shared accepts permessage-deflate with
// uWebSockets' SHARED_COMPRESSOR | SHARED_DECOMPRESSOR (one deflate and one inflate state per
// thread, reset per message, so it answers with both no_context_takeover parameters);
// --compression dedicated with DEDICATED_COMPRESSOR | DEDICATED_DECOMPRESSOR (a 32 KiB-window
// state of each per connection, as its examples/EchoServer.cpp). Echoes are sent uncompressed
// (inflate only, as EchoServer.cpp does) unless --compress-echo: then every echo is deflated again
// (ws->send(..., compress = true); uWebSockets uses zlib's default level, 6). Backpressure: as in uWebSockets'
// examples/EchoServer.cpp (100 MiB, messages never dropped or closed for it): closed-loop load
// generators bound what is in flight themselves.
//
// TLS (wss://, issue 12): --tls-cert/--tls-key (PEM) serve through uWS::SSLApp, i.e. uSockets'
// OpenSSL layer (TLS 1.2 minimum, OpenSSL's defaults otherwise: TLS 1.3, session tickets), the
// same echo behind it. Only in the binary scripts/peers/uws.sh builds with OpenSSL (uws-echo-tls;
// LIBUS_USE_OPENSSL); the plain uws-echo is built with LIBUS_NO_SSL and refuses the flags.
// --tls-low-memory sets uSockets' ssl_prefer_low_memory_usage (SSL_MODE_RELEASE_BUFFERS: OpenSSL
// frees a connection's record buffers while it is idle).
#include "App.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

static bool compressEcho = false;

// The server, plain (uWS::App) or TLS (uWS::SSLApp): one thread, runs until killed.
template <bool SSL>
static void serve(uWS::TemplatedApp<SSL> &&app, const std::string &host, int port, uWS::CompressOptions compression) {
    struct PerSocketData {};
    app.template ws<PerSocketData>("/*", {
        .compression = compression,
        .maxPayloadLength = 16 * 1024 * 1024,
        .idleTimeout = 0,
        .maxBackpressure = 100 * 1024 * 1024,
        .closeOnBackpressureLimit = false,
        .resetIdleTimeoutOnSend = false,
        .sendPingsAutomatically = false,
        .message = [](auto *ws, std::string_view message, uWS::OpCode opCode) {
            ws->send(message, opCode, compressEcho);
        },
    }).listen(host, port, [&](auto *listen_socket) {
        if (listen_socket) {
            std::fprintf(stderr, "uws-echo: listening on %s:%d%s\n", host.c_str(), port, SSL ? " (TLS, OpenSSL)" : "");
        } else {
            std::fprintf(stderr, "uws-echo: cannot listen on %s:%d\n", host.c_str(), port);
            std::exit(1);
        }
    }).run();
}

int main(int argc, char **argv) {
    std::string host = "127.0.0.1";
    int port = 9004;
    uWS::CompressOptions compression = uWS::DISABLED;
    std::string tlsCert, tlsKey;
    bool tlsLowMemory = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i], v;
        if (a == "-h" || a == "--help") {
            std::printf("uws-echo - WebSocket echo server on uWebSockets\n\nUSAGE:\n"
                        "    uws-echo [--listen HOST:PORT] [--compression off|shared|dedicated] [--compress-echo]\n"
                        "             [--tls-cert PATH --tls-key PATH [--tls-low-memory]]\n");
            return 0;
        } else if (a == "--compression" && i + 1 < argc) {
            std::string c = argv[++i];
            if (c == "off") {
                compression = uWS::DISABLED;
            } else if (c == "shared") {
                compression = uWS::CompressOptions(uWS::SHARED_COMPRESSOR | uWS::SHARED_DECOMPRESSOR);
            } else if (c == "dedicated") {
                compression = uWS::CompressOptions(uWS::DEDICATED_COMPRESSOR | uWS::DEDICATED_DECOMPRESSOR);
            } else {
                std::fprintf(stderr, "uws-echo: --compression: '%s' is not off, shared or dedicated\n", c.c_str());
                return 2;
            }
            continue;
        } else if (a == "--compress-echo") {
            compressEcho = true;
            continue;
        } else if (a == "--tls-cert" && i + 1 < argc) {
            tlsCert = argv[++i];
            continue;
        } else if (a == "--tls-key" && i + 1 < argc) {
            tlsKey = argv[++i];
            continue;
        } else if (a == "--tls-low-memory") {
            tlsLowMemory = true;
            continue;
        } else if (a == "--listen" && i + 1 < argc) {
            v = argv[++i];
        } else if (a.rfind("--listen=", 0) == 0) {
            v = a.substr(9);
        } else {
            std::fprintf(stderr, "uws-echo: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
        size_t colon = v.rfind(':');
        if (colon == std::string::npos || colon == 0) {
            std::fprintf(stderr, "uws-echo: --listen: '%s' is not HOST:PORT\n", v.c_str());
            return 2;
        }
        host = v.substr(0, colon);
        port = std::atoi(v.c_str() + colon + 1);
    }

    // A write to a socket the client already closed must not kill the server (uSockets leaves
    // SIGPIPE at its default here).
    std::signal(SIGPIPE, SIG_IGN);

    if (tlsCert.empty() != tlsKey.empty()) {
        std::fprintf(stderr, "uws-echo: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (tlsCert.empty()) {
        serve(uWS::App(), host, port, compression);
        return 0;
    }
#ifdef LIBUS_NO_SSL
    std::fprintf(stderr, "uws-echo: built without TLS (LIBUS_NO_SSL): use uws-echo-tls for --tls-cert\n");
    return 2;
#else
    uWS::SocketContextOptions tls;
    tls.cert_file_name = tlsCert.c_str();
    tls.key_file_name = tlsKey.c_str();
    tls.ssl_prefer_low_memory_usage = tlsLowMemory ? 1 : 0;
    uWS::SSLApp app(tls);
    if (app.constructorFailed()) {
        std::fprintf(stderr, "uws-echo: cannot load --tls-cert %s / --tls-key %s\n", tlsCert.c_str(), tlsKey.c_str());
        return 2;
    }
    serve(std::move(app), host, port, compression);
    return 0;
#endif
}
