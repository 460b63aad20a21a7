/// mimalloc instead of the system allocator: the tensor kernels allocate and free many
/// large buffers per step, which glibc returns to the kernel (page faults and page clearing
/// on every reuse); mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` (same index in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Never return freed memory to the OS (mimalloc's default is after 10 ms): every
    // training step, embedding batch and MTCNN stage frees and reallocates the same large
    // buffers, and each early return costs page faults and page clearing on the next
    // allocation (measured: a full-size training step is 25 % slower with a 1 s delay).
    // The resident size stays at the peak the work reaches anyway.
    // MIMALLOC_PURGE_DELAY in the environment still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called before any other thread exists.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    // Output into a pipe that closed (`facenet detect --json ... | head -n 1`) ends the process
    // quietly, as with other Unix tools, instead of a "failed printing to stdout" panic: Rust
    // ignores SIGPIPE, so a write gets EPIPE and `println!` panics. Files are written through
    // `util::atomic` (a temporary file renamed into place), so nothing is left half-written.
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; restores the default disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    facenet::cli::main_with_args(std::env::args_os().collect())
}
