use thiserror::Error;

#[derive(Debug, Error)]
pub enum LabError {
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lab {0:?} does not exist (start one with `weftctl lab up --name {0}`)")]
    NoSuchLab(String),
    #[error("lab {0:?} already exists; remove it with `weftctl lab down --name {0}`")]
    Exists(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Kernel(#[from] weft_kernel::KernelError),
    #[error("timed out: {0}")]
    Timeout(String),
}

pub type LabResult<T> = Result<T, LabError>;
