//! Adding and deleting map elements over nfnetlink, the kernel's own nftables interface.
//!
//! A published port is an element of one of our maps. Exec'ing `nft` for it cost ~4 ms of
//! every start with `-p` (a process start and libnftables' cache load); one batch over a
//! netlink socket costs microseconds. Hand-written, narrowly: `rustables` encodes set
//! elements without the data half that a map needs, and `nftnl` binds the C libnftnl. The
//! table itself (chains, rules) is still written by `nft` (see `firewall`), rarely.
//!
//! A batch is one transaction: BATCH_BEGIN, the element messages, BATCH_END. Every element
//! message asks for an ack, so the kernel answers each with an error code (0 for success)
//! and a failed batch changes nothing.

use std::io;

use netlink_sys::{constants::NETLINK_NETFILTER, Socket};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFPROTO_IPV4: u8 = 2;

/// Add or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Delete,
}

/// One element of a map in an `ip` family table: its key and, when added, its value, both
/// already in the kernel's register layout (see [`concat`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub map: &'static str,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A concatenation (`a . b . c`) as nftables lays it out: each field padded to 4 bytes.
pub fn concat(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(f);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

/// A netlink socket to nf_tables, kept for the daemon's life (by the firewall's thread).
pub struct Nftables {
    socket: Socket,
    seq: u32,
}

impl Nftables {
    pub fn open() -> io::Result<Nftables> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        // Errors echo only the failed message's header, not all of it.
        socket.set_cap_ack(true)?;
        // A kernel that never answers must not hang the firewall thread.
        use nix::sys::{socket::sockopt::ReceiveTimeout, time::TimeVal};
        nix::sys::socket::setsockopt(&socket, ReceiveTimeout, &TimeVal::new(5, 0))?;
        Ok(Nftables { socket, seq: 0 })
    }

    /// Adds or deletes `elements` of maps in table `ip <table>`, all or none.
    pub fn apply(&mut self, table: &str, op: Op, elements: &[Element]) -> io::Result<()> {
        if elements.is_empty() {
            return Ok(());
        }
        let (buf, begin, count) = self.batch(table, op, elements);
        self.socket.send(&buf, 0)?;
        self.await_acks(begin, count)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The batch's bytes, its BATCH_BEGIN's sequence number and its element messages' count
    /// (they follow with the next numbers).
    fn batch(&mut self, table: &str, op: Op, elements: &[Element]) -> (Vec<u8>, u32, u32) {
        let mut buf = Vec::with_capacity(256);
        let (ty, flags) = match op {
            Op::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
            Op::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
        };
        let begin = self.next_seq();
        message(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            0,
            |_| {},
        );
        for e in elements {
            let seq = self.next_seq();
            message(
                &mut buf,
                (NFNL_SUBSYS_NFTABLES << 8) | ty,
                flags,
                seq,
                NFPROTO_IPV4,
                |b| {
                    attr(b, NFTA_SET_ELEM_LIST_TABLE, &nul_terminated(table));
                    attr(b, NFTA_SET_ELEM_LIST_SET, &nul_terminated(e.map));
                    nest(b, NFTA_SET_ELEM_LIST_ELEMENTS, |b| {
                        nest(b, NFTA_LIST_ELEM, |b| {
                            nest(b, NFTA_SET_ELEM_KEY, |b| attr(b, NFTA_DATA_VALUE, &e.key));
                            if op == Op::Add {
                                nest(b, NFTA_SET_ELEM_DATA, |b| {
                                    attr(b, NFTA_DATA_VALUE, &e.value)
                                });
                            }
                        });
                    });
                },
            );
        }
        let seq = self.next_seq();
        message(&mut buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, |_| {});
        (buf, begin, elements.len() as u32)
    }

    /// Reads one answer per element message; the first error is the batch's. An error on
    /// the batch's own framing ends the wait at once (no element answers follow it).
    fn await_acks(&mut self, begin: u32, count: u32) -> io::Result<()> {
        let mut pending = count;
        let mut failure = None;
        let mut buf = vec![0u8; 8192];
        while pending > 0 {
            let n = self.socket.recv(&mut &mut buf[..], 0)?;
            let mut at = 0;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes"));
                if len < 16 || at + len > n {
                    break;
                }
                let nth = seq.wrapping_sub(begin);
                if ty == NLMSG_ERROR && nth <= count + 1 && len >= 20 {
                    let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4"));
                    let framing = nth == 0 || nth == count + 1;
                    match (framing, code) {
                        (true, 0) => {}
                        (true, _) => return Err(io::Error::from_raw_os_error(-code)),
                        (false, _) => pending -= 1,
                    }
                    if code != 0 && failure.is_none() {
                        failure = Some(io::Error::from_raw_os_error(-code));
                    }
                }
                at += len.next_multiple_of(4);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Appends a netlink message with an nfgenmsg header and the attributes `body` writes.
fn message(
    buf: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    body: impl FnOnce(&mut Vec<u8>),
) {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set below
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
                                                // nfgenmsg: family, version 0, resource id (the subsystem, for batch messages).
    buf.push(family);
    buf.push(0);
    let res_id = if family == 0 { NFNL_SUBSYS_NFTABLES } else { 0 };
    buf.extend_from_slice(&res_id.to_be_bytes());
    body(buf);
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn nest(buf: &mut Vec<u8>, ty: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    body(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenations_pad_each_field_to_a_register() {
        let key = concat(&[&[6], &8080u16.to_be_bytes()]);
        assert_eq!(key, [6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        let key = concat(&[&[127, 0, 0, 1], &[17], &53u16.to_be_bytes()]);
        assert_eq!(key.len(), 12);
    }

    #[test]
    fn a_batch_frames_its_element_messages() {
        // Framing only: the kernel's acceptance is covered by the networking tests.
        let mut nft = Nftables {
            socket: Socket::new(NETLINK_NETFILTER).unwrap(),
            seq: 41,
        };
        let e = Element {
            map: "publish_any",
            key: concat(&[&[6], &80u16.to_be_bytes()]),
            value: concat(&[&[10, 0, 0, 2], &80u16.to_be_bytes()]),
        };
        let (buf, begin, count) = nft.batch("t", Op::Add, &[e.clone(), e]);
        assert_eq!((begin, count), (42, 2));
        let mut at = 0;
        let mut types = Vec::new();
        while at < buf.len() {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            types.push(u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap()));
            at += len;
        }
        assert_eq!(at, buf.len());
        let new = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
        assert_eq!(types, [NFNL_MSG_BATCH_BEGIN, new, new, NFNL_MSG_BATCH_END]);
    }
}
