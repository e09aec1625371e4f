# VM matrix: runs kernel tests on stock Debian kernels under qemu (TCG). See vmtest/README.md.
# Included by the top-level Makefile:  include vmtest/vmtest.mk
#
#   make vmtest                          every kernel in VMTEST_KERNELS, the tracer's tests,
#                                        once per backend in VMTEST_BACKENDS (each forced
#                                        through DISCOTRACE_TEST_BACKEND)
#   make vmtest KERNEL=6.1               one kernel ("host" runs on this machine's kernel)
#   make vmtest VMTEST_BACKENDS=         once per kernel, each class on its best backend
#   make vmtest VMTEST_ARGS="-test.v -test.run TestLoopbackExchange"
#   make vmtest-probe                    which BPF hooks each kernel offers, counted
#   make vmtest-arm64                    the tracer's tests on Debian's arm64 cloud kernels
#                                        in qemu-system-aarch64 (VMTEST_ARM64_RUNS)
#   make vmtest-arm64 VMTEST_ARM64_RUNS=6.12:kprobe
#   make vmtest-probe-arm64              the hooks of the arm64 kernels

VMTEST_KERNELS  ?= 5.10 6.1 6.12
KERNEL          ?= $(VMTEST_KERNELS)
VMTEST_PKG      ?= ./tracer
VMTEST_ARGS     ?= -test.v
VMTEST_BACKENDS ?= fentry kprobe tracepoint
VMTEST_TIMEOUT  ?= 20m
VMTEST_PROBE_REQUIRE ?= fentry,fexit,kprobe,kretprobe,tp_btf,cgroup_skb,ringbuf

.PHONY: vmtest vmtest-probe
vmtest:
	vmtest/run.sh KERNEL="$(KERNEL)" BACKEND="$(VMTEST_BACKENDS)" TIMEOUT=$(VMTEST_TIMEOUT) -- $(VMTEST_PKG) $(VMTEST_ARGS)

vmtest-probe:
	vmtest/run.sh KERNEL="$(KERNEL)" TIMEOUT=$(VMTEST_TIMEOUT) -- ./vmtest/probe -require $(VMTEST_PROBE_REQUIRE)

# arm64: Debian's arm64 builds of the same cloud kernels, emulated (TCG) by
# qemu-system-aarch64 (Debian's qemu-system-arm). Each run is KERNEL:BACKEND,BACKEND...:
# arm64 attaches fentry/fexit to kernel functions only since Linux 6.4 (ftrace direct
# calls), so 6.1 runs the other two backends. A kernel added to VMTEST_KERNELS is not an
# arm64 run until it is listed here.
VMTEST_ARM64_RUNS ?= 6.1:kprobe,tracepoint 6.12:fentry,kprobe,tracepoint
VMTEST_ARM64_PROBE_REQUIRE ?= kprobe,kretprobe,tp_btf,cgroup_skb,ringbuf
VMTEST_ARM64_KERNELS ?= $(foreach r,$(VMTEST_ARM64_RUNS),$(firstword $(subst :, ,$(r))))

.PHONY: vmtest-arm64 vmtest-probe-arm64
vmtest-arm64:
	@status=0; for r in $(VMTEST_ARM64_RUNS); do \
		echo "vmtest/run.sh ARCH=arm64 KERNEL=$${r%%:*} BACKEND=$${r#*:} -- $(VMTEST_PKG) $(VMTEST_ARGS)"; \
		vmtest/run.sh ARCH=arm64 KERNEL="$${r%%:*}" BACKEND="$${r#*:}" TIMEOUT=$(VMTEST_TIMEOUT) -- $(VMTEST_PKG) $(VMTEST_ARGS) || status=1; \
	done; exit $$status

vmtest-probe-arm64:
	vmtest/run.sh ARCH=arm64 KERNEL="$(VMTEST_ARM64_KERNELS)" TIMEOUT=$(VMTEST_TIMEOUT) -- ./vmtest/probe -require $(VMTEST_ARM64_PROBE_REQUIRE)
