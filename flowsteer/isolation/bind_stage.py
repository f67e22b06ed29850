"""The bind stage: show the sandbox uid import directories that sit behind a private parent.

Site-packages of a venv in a 0700 home (or a whole Python installed there) are out of the
sandbox uid's reach, and no capability inside the sandbox's user namespace helps: the files
belong to a uid that namespace does not map. So this program runs first, as root, before the
uid drop: `python -I -S -B -c <this source> DIR... -- COMMAND...`. It gives the run a mount
namespace of its own in which only DIR... are visible, read-only, and then execs COMMAND
(setpriv, unshare, the sandbox runner). Like the runner it is run from source, needs only the
standard library, and never reads the program's code.
"""

import os
import sys


def _private_ancestor(path):
    """The topmost directory above `path` that a stranger cannot search (no o+x), if any."""
    parts = path.split("/")
    for end in range(2, len(parts)):
        ancestor = "/".join(parts[:end])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _bind_imports(dirs):
    """Show these directories read-only at their own paths, and nothing else of their private
    parents.

    As root, in a new private mount namespace (nothing propagates to the host): an empty tmpfs
    masks the topmost private parent of each directory, the directory is bound back at its path
    inside it, and both are made read-only. The sandbox uid can then traverse the mask and
    read the import directories, but no other file of the private parent exists for it. The
    namespace's mounts are locked in the sandbox's own, less privileged, one: it cannot undo
    them. `dirs` are absolute real paths; one without a private parent is left alone.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source, target, fstype, flags, data):
        if libc.mount(source, target.encode(), fstype, flags, data) != 0:
            raise OSError(ctypes.get_errno(), f"mount {target}")

    nosuid_nodev = 2 | 4
    read_only = 32 | 4096 | 1 | nosuid_nodev  # MS_REMOUNT | MS_BIND | MS_RDONLY, nosuid, nodev
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, 16384 | 262144, None)  # MS_REC | MS_PRIVATE: keep the host out of it
    masks = {}  # private parent -> [(directory, descriptor opened before the mask hides it)]
    covered = []
    for path in sorted(dirs, key=len):
        top = _private_ancestor(path)
        if top is not None and not any(path.startswith(d + "/") for d in covered):
            masks.setdefault(top, []).append((path, os.open(path, os.O_RDONLY | os.O_DIRECTORY)))
            covered.append(path)
    for top, inside in masks.items():
        mount(b"tmpfs", top, b"tmpfs", nosuid_nodev, b"size=1m,mode=0755")
        for path, fd in inside:
            os.makedirs(path, mode=0o755, exist_ok=True)
            mount(f"/proc/self/fd/{fd}".encode(), path, None, 4096, None)  # MS_BIND
            mount(None, path, None, read_only, None)
            os.close(fd)
        mount(None, top, None, read_only, None)


def main():
    end = sys.argv.index("--")
    try:
        _bind_imports(sys.argv[1:end])
    except OSError as exc:
        print(f"sandbox: could not bind the import directories: {exc}", file=sys.stderr)
        os._exit(125)
    os.execvp(sys.argv[end + 1], sys.argv[end + 1 :])


if __name__ == "__main__":  # run as `python -c <this source>` by the sandbox
    main()
