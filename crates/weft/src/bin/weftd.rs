//! weftd: the Weft node agent.

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use weft_agent::AgentOptions;

#[derive(Parser)]
#[command(
    name = "weftd",
    version,
    about = "Weft node agent: leases this node's subnet and routes to every other node's",
    after_help = "Example:\n  weftd --store etcd --etcd-endpoints http://10.0.0.1:2379 --ip-masq --healthz-port 9462\n  weftd --config /etc/weft/weftd.conf",
    // The config file's options come first; the same option on the command line wins.
    args_override_self = true
)]
struct Cli {
    /// Read options from FILE (`name = value` lines, as the long options without the
    /// dashes); options on the command line win.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    agent: AgentOptions,
    /// Write weftd's man page into DIR and exit (for packaging).
    #[arg(long, hide = true, value_name = "DIR")]
    write_man_page: Option<std::path::PathBuf>,
}

/// The command line with the config file's options (if `--config` is given) in front.
fn args() -> Vec<std::ffi::OsString> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let Ok(first) = Cli::try_parse_from(&argv) else {
        return argv; // clap reports the command line's own mistakes
    };
    let Some(path) = first.config else {
        return argv;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("weftd: cannot read the config file {}: {e}", path.display());
        std::process::exit(2);
    });
    let cmd = <Cli as clap::CommandFactory>::command();
    let known = weft_agent::config_file::known_options(&cmd);
    let from_file = weft_agent::config_file::to_args(&path, &text, &known).unwrap_or_else(|e| {
        eprintln!("weftd: {e}");
        std::process::exit(2);
    });
    let mut out = vec![argv[0].clone()];
    out.extend(from_file.into_iter().map(Into::into));
    out.extend(argv.into_iter().skip(1));
    out
}

fn main() {
    let cli = Cli::parse_from(args());
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
