/*
 * pause: the Kubernetes pod sandbox's placeholder process, freestanding.
 *
 * Behaves like upstream build/pause/linux/pause.c (see docs/pause-and-anchors.md §1), but
 * with no C library: its own _start, raw system calls, and nothing else, so the static
 * binary is about a kilobyte instead of ~700 KB with glibc. Written for pausebake; compiled
 * with -ffreestanding -nostdlib -static for amd64, arm64, arm (v7 hard float), ppc64le,
 * s390x and riscv64.
 *
 * Deliberate differences from upstream, none observable in normal use:
 *  - the shutdown handler writes its line with write(2) and calls exit_group(2), which are
 *    async-signal-safe (upstream calls psignal and exit, which are not);
 *  - the sleep loop ends only if the kernel refuses to sleep (say a seccomp filter making
 *    pause fail with something other than EINTR); upstream would spin on one CPU there,
 *    this prints "Error: infinite loop terminated" and exits 42, upstream's unreachable end.
 *
 * VERSION is a C string literal from the command line: pausebake passes the single
 * argument -DVERSION="v3.10" (no shell involved), quotes and backslashes escaped.
 */

#ifndef VERSION
#define VERSION "HEAD"
#endif

/* The same values on every architecture built here (they differ on mips, alpha, sparc). */
#define SIGINT 2
#define SIGTERM 15
#define SIGCHLD 17
#define SA_NOCLDSTOP 0x00000001UL
#define SA_RESTORER 0x04000000UL
#define WNOHANG 1
#define EINTR 4

/*
 * System call numbers and the one instruction that makes a call, per architecture. Every
 * wrapper returns the kernel's result: a value >= 0, or -errno.
 *
 * A handler's return goes through a "restorer" that calls rt_sigreturn. x86_64 is the one
 * architecture here whose kernel (and qemu-user) insists that the program supply it via
 * SA_RESTORER; the others use a trampoline in the vDSO or signal frame when the flag is
 * absent.
 */
#if defined(__x86_64__)
#define NR_write 1
#define NR_rt_sigaction 13
#define NR_pause 34
#define NR_getpid 39
#define NR_wait4 61
#define NR_exit_group 231
#define HAS_RESTORER 1

static long sc(long n, long a, long b, long c, long d)
{
	register long r10 __asm__("r10") = d;
	long ret;
	/* syscall itself overwrites rcx (return address) and r11 (flags). */
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

void pause_restore(void);
__asm__(".text\n"
	".type pause_restore,@function\n"
	"pause_restore:\n"
	"	mov $15, %eax\n" /* rt_sigreturn */
	"	syscall\n");

/* The kernel enters with argc at (%rsp); the C ABI wants rsp 16-aligned before a call. */
__asm__(".text\n"
	".globl _start\n"
	".type _start,@function\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call pause_main\n"
	"	hlt\n");

#elif defined(__aarch64__)
#define NR_ppoll 73
#define NR_exit_group 94
#define NR_rt_sigaction 134
#define NR_getpid 172
#define NR_wait4 260
#define NR_write 64
#define HAS_RESTORER 1 /* the field exists; left empty, the kernel uses the vDSO's */

static long sc(long n, long a, long b, long c, long d)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3)
			 : "memory");
	return x0;
}

/* sp is 16-aligned at entry and points at argc. */
__asm__(".text\n"
	".globl _start\n"
	".type _start,%function\n"
	"_start:\n"
	"	mov x29, #0\n"
	"	mov x30, #0\n"
	"	mov x0, sp\n"
	"	bl pause_main\n");

#elif defined(__arm__)
#define NR_write 4
#define NR_getpid 20
#define NR_pause 29
#define NR_rt_sigaction 174
#define NR_wait4 114
#define NR_exit_group 248
#define HAS_RESTORER 1 /* the field exists; left empty, the kernel uses its sigpage */

static long sc(long n, long a, long b, long c, long d)
{
	register long r7 __asm__("r7") = n;
	register long r0 __asm__("r0") = a;
	register long r1 __asm__("r1") = b;
	register long r2 __asm__("r2") = c;
	register long r3 __asm__("r3") = d;
	__asm__ volatile("svc #0"
			 : "+r"(r0)
			 : "r"(r7), "r"(r1), "r"(r2), "r"(r3)
			 : "memory");
	return r0;
}

/* The instruction set the compiler is emitting, to switch back to after _start (clang and
 * gcc both re-announce it before each function today; this does not rely on that). */
#ifdef __thumb__
#define ISA_OF_C ".thumb\n"
#else
#define ISA_OF_C ".arm\n"
#endif

/* The kernel enters in ARM state. EABI wants an 8-aligned sp at calls; the kernel only
 * promises 4. bl to a Thumb pause_main is turned into blx by the linker. */
__asm__(".text\n"
	".arm\n"
	".globl _start\n"
	".type _start,%function\n"
	"_start:\n"
	"	mov fp, #0\n"
	"	mov lr, #0\n"
	"	mov r0, sp\n"
	"	bic sp, sp, #7\n"
	"	bl pause_main\n"
	ISA_OF_C);

#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
#define NR_write 4
#define NR_getpid 20
#define NR_pause 29
#define NR_wait4 114
#define NR_rt_sigaction 173
#define NR_exit_group 234
#define HAS_RESTORER 1 /* the field exists; left empty, the kernel uses the vDSO's */

static long sc(long n, long a, long b, long c, long d)
{
	register long r0 __asm__("r0") = n;
	register long r3 __asm__("r3") = a;
	register long r4 __asm__("r4") = b;
	register long r5 __asm__("r5") = c;
	register long r6 __asm__("r6") = d;
	/* Failure is flagged in cr0.SO with a positive errno in r3; negate it so callers see
	 * -errno as on the other architectures. The kernel may clobber r0 and r4-r12. */
	__asm__ volatile("sc\n"
			 "	bns+ 1f\n"
			 "	neg 3, 3\n"
			 "1:"
			 : "+r"(r0), "+r"(r3), "+r"(r4), "+r"(r5), "+r"(r6)
			 :
			 : "r7", "r8", "r9", "r10", "r11", "r12", "cr0", "ctr",
			   "xer", "memory");
	return r3;
}

/* ELFv2: code reaches its data through the TOC pointer in r2, which nobody has set yet;
 * find .TOC. relative to our own address. Then a 32-byte minimal frame with a null back
 * chain, as the ABI requires of the first frame. */
__asm__(".text\n"
	".globl _start\n"
	".type _start,@function\n"
	"_start:\n"
	"	bl 0f\n"
	"0:	mflr 12\n"
	"	addis 2, 12, (.TOC.-0b)@ha\n"
	"	addi 2, 2, (.TOC.-0b)@l\n"
	"	mr 3, 1\n"
	"	clrrdi 1, 1, 4\n"
	"	li 0, 0\n"
	"	stdu 0, -32(1)\n"
	"	bl pause_main\n"
	"	nop\n");

#elif defined(__s390x__)
#define NR_write 4
#define NR_getpid 20
#define NR_pause 29
#define NR_wait4 114
#define NR_rt_sigaction 174
#define NR_exit_group 248
#define HAS_RESTORER 1 /* the field exists; left empty, the kernel uses the vDSO's */

static long sc(long n, long a, long b, long c, long d)
{
	register long r1 __asm__("r1") = n;
	register long r2 __asm__("r2") = a;
	register long r3 __asm__("r3") = b;
	register long r4 __asm__("r4") = c;
	register long r5 __asm__("r5") = d;
	__asm__ volatile("svc 0"
			 : "+d"(r2)
			 : "d"(r1), "d"(r3), "d"(r4), "d"(r5)
			 : "memory");
	return r2;
}

/* The first frame: 160 bytes of register save area with a zero back chain. */
__asm__(".text\n"
	".globl _start\n"
	".type _start,@function\n"
	"_start:\n"
	"	lgr %r2, %r15\n"
	"	aghi %r15, -160\n"
	"	xc 0(8,%r15), 0(%r15)\n"
	"	brasl %r14, pause_main\n");

#elif defined(__riscv) && __riscv_xlen == 64
#define NR_ppoll 73
#define NR_exit_group 94
#define NR_rt_sigaction 134
#define NR_getpid 172
#define NR_wait4 260
#define NR_write 64
#define HAS_RESTORER 0 /* riscv's struct sigaction has no sa_restorer field */

static long sc(long n, long a, long b, long c, long d)
{
	register long a7 __asm__("a7") = n;
	register long a0 __asm__("a0") = a;
	register long a1 __asm__("a1") = b;
	register long a2 __asm__("a2") = c;
	register long a3 __asm__("a3") = d;
	__asm__ volatile("ecall"
			 : "+r"(a0)
			 : "r"(a7), "r"(a1), "r"(a2), "r"(a3)
			 : "memory");
	return a0;
}

/* Compiled with -mno-relax, so nothing addresses data through gp and it needs no set-up. */
__asm__(".text\n"
	".globl _start\n"
	".type _start,@function\n"
	"_start:\n"
	"	mv a0, sp\n"
	"	andi sp, sp, -16\n"
	"	call pause_main\n");

#else
#error "pause.c: unsupported architecture"
#endif

/* The kernel's struct sigaction for rt_sigaction (not libc's): a 64-signal mask in longs. */
struct ksigaction {
	void (*handler)(int);
	unsigned long flags;
#if HAS_RESTORER
	void (*restorer)(void);
#endif
	unsigned long mask[64 / (8 * sizeof(long))];
};

/* noinline here and below: each is called from several places, and size is the point. */
static __attribute__((noinline)) void write_all(int fd, const char *s, unsigned long len)
{
	while (len > 0) {
		long n = sc(NR_write, fd, (long)s, (long)len, 0);
		if (n == -EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (unsigned long)n;
	}
}

/* A string literal and its length without the terminating NUL. */
#define SAY(fd, lit) write_all(fd, lit, sizeof(lit) - 1)

static __attribute__((noinline, noreturn)) void exit_group(int code)
{
	for (;;)
		sc(NR_exit_group, code, 0, 0, 0);
}

/* SIGINT and SIGTERM: upstream prints psignal's "<prefix>: <description>" and exits 0. */
static void shutdown(int sig)
{
	if (sig == SIGINT)
		SAY(2, "Shutting down, got signal: Interrupt\n");
	else
		SAY(2, "Shutting down, got signal: Terminated\n");
	exit_group(0);
}

/* Reap every child that has exited; several may have been folded into one SIGCHLD. */
static void reap(int sig)
{
	(void)sig;
	while (sc(NR_wait4, -1, 0, WNOHANG, 0) > 0)
		;
}

/* Static so that setting up an action needs no stores (and no implicit memset). */
static const struct ksigaction on_shutdown = {
	.handler = shutdown,
#if defined(__x86_64__)
	.flags = SA_RESTORER,
	.restorer = pause_restore,
#endif
};

static const struct ksigaction on_child = {
	.handler = reap,
#if defined(__x86_64__)
	.flags = SA_NOCLDSTOP | SA_RESTORER,
	.restorer = pause_restore,
#else
	.flags = SA_NOCLDSTOP,
#endif
};

/* Upstream's order; a failure to install the n-th handler exits with status n. */
static const struct {
	long sig;
	const struct ksigaction *act;
} handlers[3] = {
	{SIGINT, &on_shutdown},
	{SIGTERM, &on_shutdown},
	{SIGCHLD, &on_child},
};

/* Sleep until a signal arrives; returns the kernel's result (-EINTR normally). Where there
 * is no pause system call, ppoll on no descriptors with no timeout and no mask change is
 * the same wait. */
static long sleep_for_signal(void)
{
#ifdef NR_pause
	return sc(NR_pause, 0, 0, 0, 0);
#else
	return sc(NR_ppoll, 0, 0, 0, 0);
#endif
}

/* Upstream compares with strcasecmp(arg, "-v"). */
static int is_version_flag(const char *arg)
{
	return arg[0] == '-' && (arg[1] | 0x20) == 'v' && arg[2] == '\0';
}

__attribute__((noreturn, used)) void pause_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);

	for (long i = 1; i < argc; i++) {
		if (is_version_flag(argv[i])) {
			SAY(1, "pause.c " VERSION "\n");
			exit_group(0);
		}
	}

	if (sc(NR_getpid, 0, 0, 0, 0) != 1)
		/* Not an error: pause is also used outside infra containers. */
		SAY(2, "Warning: pause should be the first process\n");

	for (int i = 0; i < 3; i++) {
		const struct ksigaction *act = handlers[i].act;
		if (sc(NR_rt_sigaction, handlers[i].sig, (long)act, 0, sizeof(act->mask)) != 0)
			exit_group(i + 1);
	}

	while (sleep_for_signal() == -EINTR)
		;

	SAY(2, "Error: infinite loop terminated\n");
	exit_group(42);
}
