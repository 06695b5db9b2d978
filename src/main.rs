//! The `fc-init` binary: everything lives in the library; this only turns its result into the
//! process's exit status.

fn main() {
    std::process::exit(fc_init::cli::main());
}
