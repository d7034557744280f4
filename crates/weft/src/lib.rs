//! Weft's binaries live in `src/bin`: `weftd` (the node agent) and `weftctl` (the
//! operator's command line). The logic is in the `weft-*` crates; this package exists so
//! both binaries build together and the end-to-end tests can run them.
