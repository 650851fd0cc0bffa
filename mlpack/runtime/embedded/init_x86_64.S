# mlpack-init: a minimal pid 1 for `--init` (x86_64 Linux, static, no libc).
# Blocks every signal, forks the payload (argv[1..]) with the mask cleared, then loops on
# rt_sigtimedwait: SIGCHLD reaps every zombie (wait4 -1, WNOHANG) and, when the payload itself
# exits, exits with its status (128+signal when killed); any other signal is forwarded to it.
	.globl _start
	.text
_start:
	mov	%rsp, %rbp		# rbp -> argc, argv..., NULL, envp...
	mov	$14, %eax		# rt_sigprocmask(SIG_BLOCK, &all, NULL, 8)
	xor	%edi, %edi
	lea	all(%rip), %rsi
	xor	%edx, %edx
	mov	$8, %r10d
	syscall
	mov	$57, %eax		# fork()
	syscall
	test	%rax, %rax
	js	fail
	jnz	parent
	mov	$14, %eax		# child: rt_sigprocmask(SIG_SETMASK, &none, NULL, 8)
	mov	$2, %edi
	lea	none(%rip), %rsi
	xor	%edx, %edx
	mov	$8, %r10d
	syscall
	mov	(%rbp), %rcx		# argc
	lea	16(%rbp), %rsi		# argv + 1
	lea	16(%rbp,%rcx,8), %rdx	# envp = argv + argc + 1
	mov	(%rsi), %rdi		# argv[1]
	test	%rdi, %rdi
	jz	fail
	mov	$59, %eax		# execve(argv[1], argv+1, envp)
	syscall
fail:
	mov	$231, %eax		# exit_group(127)
	mov	$127, %edi
	syscall
parent:
	mov	%rax, %r12		# payload pid
wait_signal:
	mov	$128, %eax		# rt_sigtimedwait(&all, &info, NULL, 8)
	lea	all(%rip), %rdi
	lea	info(%rip), %rsi
	xor	%edx, %edx
	mov	$8, %r10d
	syscall
	cmp	$-4, %rax		# EINTR
	je	wait_signal
	test	%rax, %rax
	js	wait_signal
	cmp	$17, %rax		# SIGCHLD
	je	reap
	mov	%rax, %rsi		# kill(payload, sig)
	mov	%r12, %rdi
	mov	$62, %eax
	syscall
	jmp	wait_signal
reap:
	mov	$61, %eax		# wait4(-1, &status, WNOHANG, NULL)
	mov	$-1, %rdi
	lea	status(%rip), %rsi
	mov	$1, %edx
	xor	%r10d, %r10d
	syscall
	test	%rax, %rax
	jle	wait_signal
	cmp	%r12, %rax
	jne	reap
	mov	status(%rip), %edi
	mov	%edi, %eax
	and	$0x7f, %eax		# WTERMSIG
	jz	exited
	lea	128(%rax), %edi
	jmp	out
exited:
	shr	$8, %edi		# WEXITSTATUS
	and	$0xff, %edi
out:
	mov	$231, %eax
	syscall

	.section .rodata
all:	.quad	0xffffffffffffffff
none:	.quad	0
	.bss
status:	.long	0
	.align	8
info:	.space	128
