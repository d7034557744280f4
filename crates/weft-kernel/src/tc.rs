//! Weft's `tc` filter: one BPF program on a device's ingress hook.
//!
//! Attached as a classic `cls_bpf` filter under the device's `clsact` qdisc rather than
//! a `tcx` link, so it stays attached when the agent exits or restarts (a restart
//! changes nothing) and shows in `tc filter show dev DEV ingress`. It is marked by its
//! preference and name, [`FILTER_PREF`] and [`FILTER_NAME`]; no other filter is touched,
//! and the `clsact` qdisc, which other software may share, is never removed.

use futures::stream::TryStreamExt;
use netlink_packet_core::{
    NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;
use std::os::fd::AsRawFd;

use crate::bpf::Program;
use crate::netlink::KernelError;

/// The filter's preference (priority) on the ingress hook: Weft's slot.
pub const FILTER_PREF: u16 = 0x7765; // "we"
/// The name the filter carries, as `tc filter show` prints it.
pub const FILTER_NAME: &str = "weft-fastpath";
const FILTER_HANDLE: u32 = 1;
const ETH_P_ALL: u16 = 0x0003;
const EEXIST: i32 = 17;
const ENOENT: i32 = 2;

/// What [`ensure_ingress_program`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// The same program was already attached.
    Unchanged,
    Attached,
    /// A different Weft program was there and was replaced in one step.
    Replaced,
}

fn ingress_parent() -> TcHandle {
    TcHandle {
        major: 0xffff,
        minor: TcHandle::MIN_INGRESS,
    }
}

fn filter_message(index: u32) -> TcMessage {
    let mut m = TcMessage::with_index(index as i32);
    m.header.parent = ingress_parent();
    m.header.handle = TcHandle::from(FILTER_HANDLE);
    m.header.info = u32::from(TcHandle {
        major: FILTER_PREF,
        minor: ETH_P_ALL.to_be(),
    });
    m
}

async fn request(
    handle: &Handle,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<(), rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut response = handle.clone().request(req)?;
    while let Some(m) = futures::StreamExt::next(&mut response).await {
        if let netlink_packet_core::NetlinkPayload::Error(e) = m.payload {
            if e.code.is_some() {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
        }
    }
    Ok(())
}

fn nl(op: &'static str) -> impl Fn(rtnetlink::Error) -> KernelError {
    move |source| KernelError::Netlink { op, source }
}

fn code(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// The tag of the program in Weft's filter on the device's ingress hook, if any.
pub async fn ingress_program_tag(
    handle: &Handle,
    index: u32,
) -> Result<Option<[u8; 8]>, KernelError> {
    let mut stream = handle
        .clone()
        .traffic_filter(index as i32)
        .get()
        .ingress()
        .execute();
    loop {
        let m = match stream.try_next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            // No clsact qdisc: nothing attached.
            Err(e) if matches!(code(&e), Some(libc::EINVAL) | Some(ENOENT)) => return Ok(None),
            Err(e) => return Err(nl("read tc filters")(e)),
        };
        if (m.header.info >> 16) as u16 != FILTER_PREF {
            continue;
        }
        let mut name = None;
        let mut tag = None;
        for a in &m.attributes {
            if let TcAttribute::Options(opts) = a {
                for o in opts {
                    match o {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
                        TcOption::Bpf(TcFilterBpfOption::ProgTag(t)) => tag = Some(*t),
                        _ => {}
                    }
                }
            }
        }
        if name.as_deref() == Some(FILTER_NAME) {
            return Ok(tag);
        }
    }
}

/// Makes `program` the one in Weft's filter on the device's ingress hook: adds the
/// `clsact` qdisc if the device has none, leaves a filter with the same program alone,
/// replaces a different one atomically.
pub async fn ensure_ingress_program(
    handle: &Handle,
    index: u32,
    program: &Program,
) -> Result<Attach, KernelError> {
    let present = ingress_program_tag(handle, index).await?;
    if present == Some(program.tag) {
        return Ok(Attach::Unchanged);
    }
    if present.is_none() {
        let mut q = TcMessage::with_index(index as i32);
        q.header.parent = TcHandle::CLSACT;
        q.header.handle = TcHandle::from(0xffff_0000);
        q.attributes.push(TcAttribute::Kind("clsact".into()));
        match request(
            handle,
            RouteNetlinkMessage::NewQueueDiscipline(q),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        {
            Err(e) if code(&e) != Some(EEXIST) => return Err(nl("add clsact qdisc")(e)),
            _ => {}
        }
    }
    let mut f = filter_message(index);
    f.attributes.push(TcAttribute::Kind("bpf".into()));
    f.attributes.push(TcAttribute::Options(vec![
        TcOption::Bpf(TcFilterBpfOption::ProgFd(program.fd.as_raw_fd() as u32)),
        TcOption::Bpf(TcFilterBpfOption::ProgName(FILTER_NAME.into())),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ]));
    request(
        handle,
        RouteNetlinkMessage::NewTrafficFilter(f),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
    .await
    .map_err(nl("attach tc filter"))?;
    Ok(if present.is_some() {
        Attach::Replaced
    } else {
        Attach::Attached
    })
}

/// Removes Weft's filter from the device's ingress hook; true if there was one.
pub async fn remove_ingress_program(handle: &Handle, index: u32) -> Result<bool, KernelError> {
    if ingress_program_tag(handle, index).await?.is_none() {
        return Ok(false);
    }
    let mut f = filter_message(index);
    f.attributes.push(TcAttribute::Kind("bpf".into()));
    match request(handle, RouteNetlinkMessage::DelTrafficFilter(f), 0).await {
        Ok(()) => Ok(true),
        Err(e) if matches!(code(&e), Some(ENOENT) | Some(libc::ENODEV)) => Ok(false),
        Err(e) => Err(nl("remove tc filter")(e)),
    }
}
