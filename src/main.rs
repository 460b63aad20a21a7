/// mimalloc instead of the system allocator: the tensor kernels allocate and free many
/// large buffers per step, which glibc returns to the kernel (page faults and page clearing
/// on every reuse); mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    facenet::cli::main_with_args(std::env::args_os().collect())
}
