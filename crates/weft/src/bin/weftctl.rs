//! weftctl: the Weft operator's command line.

use clap::Parser;

fn main() {
    std::process::exit(weft_cli::main(weft_cli::Cli::parse()));
}
