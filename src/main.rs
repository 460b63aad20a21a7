/// mimalloc instead of the system allocator: the tensor kernels allocate and free many
/// large buffers per step, which glibc returns to the kernel (page faults and page clearing
/// on every reuse); mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` (same index in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Return freed memory to the OS after 1 s instead of 10 ms: a training step or an
    // MTCNN stage frees and reallocates the same large buffers within milliseconds, and
    // every early return costs page faults and page clearing on the next allocation.
    // MIMALLOC_PURGE_DELAY in the environment still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called before any other thread exists.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    }
    facenet::cli::main_with_args(std::env::args_os().collect())
}
