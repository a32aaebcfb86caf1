// Starting a child process that never outlives its parent (the node): Linux's parent-death signal.
#ifndef CSPAWN_H
#define CSPAWN_H

#include <sys/types.h>

/// Starts `path` with `argv` and `envp` (NULL-terminated) in a process group of its own, stdin from
/// /dev/null, stdout and stderr appended to `output_path`, and SIGKILL as its parent-death signal,
/// so it dies with the thread that called this (call it from a thread that lives as long as the
/// process). Returns the child's pid, or -errno when the fork failed; a failure after the fork
/// (the output file, exec) ends the child with exit status 127 after writing the reason to the
/// output file when it could be opened.
pid_t flotilla_spawn_bound_to_parent(const char *path, char *const argv[], char *const envp[],
                                     const char *output_path);

#endif
