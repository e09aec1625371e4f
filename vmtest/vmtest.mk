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
