//! weftd: the Weft node agent.

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use weft_agent::AgentOptions;

#[derive(Parser)]
#[command(
    name = "weftd",
    version,
    about = "Weft node agent: leases this node's subnet and routes to every other node's"
)]
struct Cli {
    #[command(flatten)]
    agent: AgentOptions,
    /// Write weftd's man page into DIR and exit (for packaging).
    #[arg(long, hide = true, value_name = "DIR")]
    write_man_page: Option<std::path::PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    if let Some(dir) = &cli.write_man_page {
        let cmd = <Cli as clap::CommandFactory>::command();
        match weft_cli::reference::man_pages(cmd, dir) {
            Ok(_) => std::process::exit(0),
            Err(e) => {
                eprintln!("weftd: cannot write the man page to {}: {e}", dir.display());
                std::process::exit(1);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(async {
        let shutdown = async {
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        };
        match weft_agent::run(cli.agent, shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("{e}");
                1
            }
        }
    });
    std::process::exit(code);
}
