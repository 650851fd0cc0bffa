// mlpack-init: a minimal pid 1 for `--init` (aarch64 Linux, static, no libc); the same program
// as init_x86_64.S. Blocks every signal, forks the payload (argv[1..]) with the mask cleared,
// then loops on rt_sigtimedwait: SIGCHLD reaps every zombie (wait4 -1, WNOHANG) and, when the
// payload itself exits, exits with its status (128+signal when killed); any other signal is
// forwarded to it.
	.globl	_start
	.text
_start:
	mov	x19, sp			// x19 -> argc, argv..., NULL, envp...
	mov	x0, #0			// rt_sigprocmask(SIG_BLOCK, &all, NULL, 8)
	adr	x1, all
	mov	x2, #0
	mov	x3, #8
	mov	x8, #135
	svc	#0
	mov	x0, #17			// clone(SIGCHLD, 0, 0, 0, 0): fork()
	mov	x1, #0
	mov	x2, #0
	mov	x3, #0
	mov	x4, #0
	mov	x8, #220
	svc	#0
	cmp	x0, #0
	b.lt	fail
	b.ne	parent
	mov	x0, #2			// child: rt_sigprocmask(SIG_SETMASK, &none, NULL, 8)
	adr	x1, none
	mov	x2, #0
	mov	x3, #8
	mov	x8, #135
	svc	#0
	ldr	x9, [x19]		// argc
	add	x1, x19, #16		// argv + 1
	add	x2, x19, x9, lsl #3
	add	x2, x2, #16		// envp = argv + argc + 1
	ldr	x0, [x1]		// argv[1]
	cbz	x0, fail
	mov	x8, #221		// execve(argv[1], argv+1, envp)
	svc	#0
fail:
	mov	x0, #127		// exit_group(127)
	mov	x8, #94
	svc	#0
parent:
	mov	x20, x0			// payload pid
wait_signal:
	adr	x0, all			// rt_sigtimedwait(&all, &info, NULL, 8)
	adr	x1, info
	mov	x2, #0
	mov	x3, #8
	mov	x8, #137
	svc	#0
	cmn	x0, #4			// EINTR
	b.eq	wait_signal
	cmp	x0, #0
	b.lt	wait_signal
	cmp	x0, #17			// SIGCHLD
	b.eq	reap
	mov	x1, x0			// kill(payload, sig)
	mov	x0, x20
	mov	x8, #129
	svc	#0
	b	wait_signal
reap:
	mov	x0, #-1			// wait4(-1, &status, WNOHANG, NULL)
	adr	x1, status
	mov	x2, #1
	mov	x3, #0
	mov	x8, #260
	svc	#0
	cmp	x0, #0
	b.le	wait_signal
	cmp	x0, x20
	b.ne	reap
	adr	x9, status
	ldr	w0, [x9]
	and	w1, w0, #0x7f		// WTERMSIG
	cbz	w1, exited
	add	w0, w1, #128
	b	out
exited:
	ubfx	w0, w0, #8, #8		// WEXITSTATUS
out:
	mov	x8, #94			// exit_group(status)
	svc	#0

	.section .rodata
	.balign	8
all:	.quad	0xffffffffffffffff
none:	.quad	0
	.bss
	.balign	8
status:	.word	0
	.balign	8
info:	.space	128
