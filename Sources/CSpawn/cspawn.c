#include "cspawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

// Between fork and exec only async-signal-safe calls: the parent has other threads.
// The reason is written as "flotilla: WHAT failed, errno N" (strerror is not async-signal-safe).
static void write_reason(int fd, const char *what, int error) {
    if (fd < 0) return;
    char digits[12];
    int length = 0;
    unsigned value = error < 0 ? 0 : (unsigned)error;
    do {
        digits[sizeof digits - 1 - length++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0 && length < (int)sizeof digits);
    (void)!write(fd, "flotilla: ", 10);
    (void)!write(fd, what, strlen(what));
    (void)!write(fd, " failed, errno ", 15);
    (void)!write(fd, digits + sizeof digits - length, (size_t)length);
    (void)!write(fd, "\n", 1);
}

pid_t flotilla_spawn_bound_to_parent(const char *path, char *const argv[], char *const envp[],
                                     const char *output_path) {
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) return -errno;
    if (child > 0) return child;

    // Not O_CLOEXEC: should this land on 1 or 2 (the parent ran with them closed), dup2 onto itself
    // keeps the flag and the program would lose its output; close_range closes it otherwise.
    int out = open(output_path, O_WRONLY | O_CREAT | O_APPEND, 0640);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        write_reason(out, "prctl(PR_SET_PDEATHSIG)", errno);
        _exit(127);
    }
    // The parent may have died before the signal was armed: then nobody would send it.
    if (getppid() != parent) _exit(127);
    if (out < 0) _exit(127);
    setpgid(0, 0);
    // Signals the parent ignored or blocked would stay so in the child.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int in = open("/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) {
        write_reason(out, "redirecting stdio", errno);
        _exit(127);
    }
    // Descriptors the parent left without O_CLOEXEC must not leak into the child.
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
        for (int fd = 3; fd < 65536; fd++) close(fd);
    }
    execve(path, argv, envp);
    write_reason(2, path, errno);
    _exit(127);
}
