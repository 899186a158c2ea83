# bastion-stdio: an OpenSSH ProxyCommand that reaches Azure VMs through
# Azure Bastion.  Plain make; dependencies come from pkg-config.

VERSION =	0.1.0
PREFIX ?=	/usr/local
BINDIR ?=	$(PREFIX)/bin
MANDIR ?=	$(PREFIX)/share/man
BASHCOMPDIR ?=	$(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?=	$(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?=	$(PREFIX)/share/fish/vendor_completions.d

PKGS =		libwebsockets libcurl libcjson openssl
CC ?=		cc
PKG_CONFIG ?=	pkg-config
WARN =		-Wall -Wextra -Wformat=2 -Wshadow -Wpointer-arith \
		-Wstrict-prototypes -Wmissing-prototypes -Werror
CFLAGS ?=	-O2 -g
ALL_CFLAGS =	-std=c99 -D_GNU_SOURCE $(WARN) $(CFLAGS) \
		-DBASTION_STDIO_VERSION='"$(VERSION)"' \
		$(shell $(PKG_CONFIG) --cflags $(PKGS))
LIBS =		$(shell $(PKG_CONFIG) --libs $(PKGS))

# Everything but main.o, so that unit tests link the same objects.
OBJS =		src/arm.o src/arm_call.o src/buf.o src/cache.o src/cloud.o \
		src/config.o src/config_ssh.o src/cred.o src/cred_cli.o \
		src/cred_mi.o src/cred_sp.o src/discover.o \
		src/discover_bastion.o src/doctor.o src/entra.o src/graph.o \
		src/http.o src/jwt.o src/log.o src/login.o src/lookup.o \
		src/match.o src/misc.o src/proxy.o src/relay.o src/route.o \
		src/session.o src/target.o src/tunnel.o src/tunnel_stdio.o \
		src/tunnel_ws.o src/vm.o src/wsframe.o
PROG =		bastion-stdio

all: $(PROG)

$(PROG): src/main.o $(OBJS)
	$(CC) $(LDFLAGS) -o $@ src/main.o $(OBJS) $(LIBS)

src/%.o: src/%.c src/*.h
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

UNIT_TESTS =	tests/unit/test_config tests/unit/test_match \
		tests/unit/test_target tests/unit/test_parse \
		tests/unit/test_buf tests/unit/test_proxy tests/unit/test_cred \
		tests/unit/test_wsframe

tests/unit/%: tests/unit/%.c tests/unit/unit.h $(OBJS)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(OBJS) $(LIBS)

unit: $(UNIT_TESTS)

# The whole suite: unit tests, then the end-to-end tests against the
# local Azure emulator with real OpenSSH, scp, rsync and git.
check: $(PROG) unit
	tests/run

# The same suite with AddressSanitizer and UndefinedBehaviorSanitizer.
check-asan:
	$(MAKE) clean
	$(MAKE) CC=clang CFLAGS="-O1 -g -fsanitize=address,undefined \
	    -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    LDFLAGS="-fsanitize=address,undefined" check
	$(MAKE) clean

# libFuzzer targets (clang): every parser of outside input.  `make fuzz`
# runs each for FUZZ_SECONDS from the seeds, the fixtures and what earlier
# runs found; inputs that once failed are kept in fuzz/regressions.
FUZZERS =	fuzz/fuzz_config fuzz/fuzz_json fuzz/fuzz_target \
		fuzz/fuzz_wsframe
FUZZ_SECONDS ?=	60
FUZZ_FLAGS =	-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
FUZZ_OBJS =	$(OBJS:src/%.o=fuzz/obj/%.o)

fuzz/obj/%.o: src/%.c src/*.h
	@mkdir -p fuzz/obj
	clang -std=c99 -D_GNU_SOURCE $(WARN) $(FUZZ_FLAGS) \
	    -fsanitize=fuzzer-no-link -DBASTION_STDIO_VERSION='"$(VERSION)"' \
	    $(shell $(PKG_CONFIG) --cflags $(PKGS)) -c -o $@ $<

fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJS)
	clang -std=c99 -D_GNU_SOURCE $(WARN) $(FUZZ_FLAGS) -fsanitize=fuzzer \
	    -Isrc $(shell $(PKG_CONFIG) --cflags $(PKGS)) -o $@ $< \
	    $(FUZZ_OBJS) $(LIBS)

fuzzers: $(FUZZERS)

.SECONDARY: $(FUZZ_OBJS)

fuzz: $(FUZZERS)
	tests/fuzz.sh $(FUZZ_SECONDS)

lint:
	tests/lint.sh

demo: $(PROG)
	tests/demo.sh

# Benchmarks beside the limit, on loopback (bench/run.sh, BENCHMARKS.md);
# not part of CI.  bench/relay stands in for the Bastion's data plane.
BENCH_TOOLS =	bench/relay bench/probe

bench/relay bench/probe: bench/%: bench/%.c
	$(CC) $(ALL_CFLAGS) -o $@ $< \
	    $(shell $(PKG_CONFIG) --libs openssl) -lpthread

bench: $(PROG) $(BENCH_TOOLS)
	bench/run.sh

# Its set-up part alone, in seconds: cold and warm, configured and not.
bench-setup: $(PROG) $(BENCH_TOOLS)
	bench/run.sh --setup

# Time to an ARM token per credential source, cold and warm cache.
bench-token: $(PROG)
	bench/token.sh

.PHONY: bench bench-setup bench-token

install: $(PROG)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) \
	    $(DESTDIR)$(FISHCOMPDIR)
	install -m 755 $(PROG) $(DESTDIR)$(BINDIR)/$(PROG)
	install -m 644 bastion-stdio.1 $(DESTDIR)$(MANDIR)/man1/bastion-stdio.1
	install -m 644 completions/bastion-stdio.bash \
	    $(DESTDIR)$(BASHCOMPDIR)/bastion-stdio
	install -m 644 completions/_bastion-stdio \
	    $(DESTDIR)$(ZSHCOMPDIR)/_bastion-stdio
	install -m 644 completions/bastion-stdio.fish \
	    $(DESTDIR)$(FISHCOMPDIR)/bastion-stdio.fish

clean:
	rm -f $(PROG) src/*.o $(UNIT_TESTS) $(FUZZERS)
	rm -rf fuzz/obj

.PHONY: all unit check check-asan lint demo install clean fuzz fuzzers
