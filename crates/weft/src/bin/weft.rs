//! weft: the CNI plugin (network config `"type": "weft"`), called by container runtimes
//! with CNI_* in the environment and the network config on stdin.

fn main() {
    std::process::exit(weft_cni::main());
}
