//! The kernel-side capture filter for live sniffing: a classic BPF program that keeps only TCP
//! segments from or to the broker ports, so the capture socket never copies unrelated traffic
//! to userspace. The userspace core checks ports again; the filter only saves work.
//!
//! The program runs on packets as a `SOCK_DGRAM` packet socket sees them: starting at the IP
//! header, whatever the link type. Pure: it returns instructions; the capture edge attaches them.

/// One classic BPF instruction, as `struct sock_filter` lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// How many bytes of an accepted packet the kernel copies: enough for GRO/GSO super-segments.
pub const SNAP_LEN: u32 = 256 * 1024;

const LD_B_ABS: u16 = 0x30;
const LD_H_ABS: u16 = 0x28;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const ALU_AND_K: u16 = 0x54;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

const IPPROTO_TCP: u32 = 6;

/// Where a conditional jump goes, before offsets are resolved.
#[derive(Clone, Copy)]
enum Target {
    Next,
    Label(Label),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Ipv6,
    Accept,
    Drop,
}

enum Step {
    Plain(u16, u32),
    Jump(u16, u32, Target, Target),
    Mark(Label),
}

/// Compares the loaded port with each broker port, accepting on a match, else falls through.
fn port_checks(steps: &mut Vec<Step>, ports: &[u16]) {
    for &port in ports {
        steps.push(Step::Jump(
            JEQ_K,
            u32::from(port),
            Target::Label(Label::Accept),
            Target::Next,
        ));
    }
}

/// The filter accepting IPv4 and IPv6 TCP segments whose source or destination port is one
/// of `ports` (IPv4 non-first fragments and IPv6 extension headers are not accepted).
pub fn broker_port_filter(ports: &[u16]) -> Vec<Instruction> {
    let mut steps = vec![
        Step::Plain(LD_B_ABS, 0),
        Step::Plain(ALU_AND_K, 0xf0),
        Step::Jump(JEQ_K, 0x40, Target::Next, Target::Label(Label::Ipv6)),
        Step::Plain(LD_B_ABS, 9),
        Step::Jump(JEQ_K, IPPROTO_TCP, Target::Next, Target::Label(Label::Drop)),
        Step::Plain(LD_H_ABS, 6),
        Step::Jump(JSET_K, 0x1fff, Target::Label(Label::Drop), Target::Next),
        Step::Plain(LDX_B_MSH, 0),
        Step::Plain(LD_H_IND, 0),
    ];
    port_checks(&mut steps, ports);
    steps.push(Step::Plain(LD_H_IND, 2));
    port_checks(&mut steps, ports);
    steps.push(Step::Plain(RET_K, 0));
    steps.push(Step::Mark(Label::Ipv6));
    steps.push(Step::Jump(
        JEQ_K,
        0x60,
        Target::Next,
        Target::Label(Label::Drop),
    ));
    steps.push(Step::Plain(LD_B_ABS, 6));
    steps.push(Step::Jump(
        JEQ_K,
        IPPROTO_TCP,
        Target::Next,
        Target::Label(Label::Drop),
    ));
    steps.push(Step::Plain(LD_H_ABS, 40));
    port_checks(&mut steps, ports);
    steps.push(Step::Plain(LD_H_ABS, 42));
    port_checks(&mut steps, ports);
    steps.push(Step::Mark(Label::Drop));
    steps.push(Step::Plain(RET_K, 0));
    steps.push(Step::Mark(Label::Accept));
    steps.push(Step::Plain(RET_K, SNAP_LEN));
    assemble(&steps)
}

/// Resolves labels into relative jump offsets. Jumps only go forward, as cBPF requires.
fn assemble(steps: &[Step]) -> Vec<Instruction> {
    let mut index_of = Vec::new();
    let mut next_index = 0usize;
    for step in steps {
        match step {
            Step::Mark(label) => index_of.push((*label, next_index)),
            _ => next_index += 1,
        }
    }
    let resolve = |target: Target, from: usize| -> u8 {
        match target {
            Target::Next => 0,
            Target::Label(label) => index_of
                .iter()
                .find(|(known, _)| *known == label)
                .map(|(_, at)| u8::try_from(at - from - 1).unwrap_or(u8::MAX))
                .unwrap_or(u8::MAX),
        }
    };
    let mut program = Vec::with_capacity(next_index);
    for step in steps {
        let at = program.len();
        match *step {
            Step::Plain(code, k) => program.push(Instruction {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Step::Jump(code, k, jt, jf) => program.push(Instruction {
                code,
                jt: resolve(jt, at),
                jf: resolve(jf, at),
                k,
            }),
            Step::Mark(_) => {}
        }
    }
    program
}

/// The most broker ports one filter takes: every jump must fit cBPF's 8-bit offsets.
pub const MAX_PORTS: usize = 60;

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal interpreter of the instructions the filter uses, to check it without a kernel.
    fn run(program: &[Instruction], packet: &[u8]) -> u32 {
        let byte = |at: usize| packet.get(at).copied().map(u32::from);
        let half = |at: usize| Some((byte(at)? << 8) | byte(at + 1)?);
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        while let Some(op) = program.get(pc) {
            pc += 1;
            let loaded = match op.code {
                LD_B_ABS => byte(op.k as usize),
                LD_H_ABS => half(op.k as usize),
                LD_H_IND => half(x as usize + op.k as usize),
                _ => Some(a),
            };
            let Some(value) = loaded else { return 0 };
            match op.code {
                LD_B_ABS | LD_H_ABS | LD_H_IND => a = value,
                LDX_B_MSH => x = 4 * (byte(op.k as usize).unwrap_or(0) & 0xf),
                ALU_AND_K => a &= op.k,
                JEQ_K => pc += usize::from(if a == op.k { op.jt } else { op.jf }),
                JSET_K => pc += usize::from(if a & op.k != 0 { op.jt } else { op.jf }),
                RET_K => return op.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("program fell off its end")
    }

    fn ipv4(protocol: u8, options: usize, frag: u16, sport: u16, dport: u16) -> Vec<u8> {
        let ihl = 5 + options / 4;
        let mut packet = vec![0u8; ihl * 4];
        packet[0] = 0x40 | ihl as u8;
        packet[6..8].copy_from_slice(&frag.to_be_bytes());
        packet[9] = protocol;
        packet.extend_from_slice(&sport.to_be_bytes());
        packet.extend_from_slice(&dport.to_be_bytes());
        packet.extend_from_slice(&[0u8; 16]);
        packet
    }

    fn ipv6(next: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut packet = vec![0u8; 40];
        packet[0] = 0x60;
        packet[6] = next;
        packet.extend_from_slice(&sport.to_be_bytes());
        packet.extend_from_slice(&dport.to_be_bytes());
        packet.extend_from_slice(&[0u8; 16]);
        packet
    }

    #[test]
    fn keeps_tcp_to_or_from_broker_ports_only() {
        let filter = broker_port_filter(&[9092, 9094]);
        assert_eq!(run(&filter, &ipv4(6, 0, 0, 40000, 9092)), SNAP_LEN);
        assert_eq!(run(&filter, &ipv4(6, 0, 0, 9094, 40000)), SNAP_LEN);
        assert_eq!(
            run(&filter, &ipv4(6, 8, 0, 40000, 9092)),
            SNAP_LEN,
            "IP options"
        );
        assert_eq!(
            run(&filter, &ipv4(6, 0, 0x4000, 40000, 9092)),
            SNAP_LEN,
            "DF set"
        );
        assert_eq!(run(&filter, &ipv4(6, 0, 0, 40000, 80)), 0);
        assert_eq!(run(&filter, &ipv4(17, 0, 0, 40000, 9092)), 0, "UDP");
        assert_eq!(
            run(&filter, &ipv4(6, 0, 0x0010, 40000, 9092)),
            0,
            "later fragment"
        );
        assert_eq!(run(&filter, &ipv6(6, 40000, 9092)), SNAP_LEN);
        assert_eq!(run(&filter, &ipv6(6, 9092, 40000)), SNAP_LEN);
        assert_eq!(run(&filter, &ipv6(6, 40000, 443)), 0);
        assert_eq!(run(&filter, &ipv6(17, 40000, 9092)), 0);
        assert_eq!(run(&filter, &[0x45, 0, 0]), 0, "truncated");
        assert_eq!(run(&filter, &[]), 0, "empty");
    }

    #[test]
    fn the_most_ports_still_fit_8_bit_jumps() {
        let ports: Vec<u16> = (0..MAX_PORTS as u16).map(|i| 9000 + i).collect();
        let filter = broker_port_filter(&ports);
        assert!(filter.iter().all(|op| op.jt != u8::MAX && op.jf != u8::MAX));
        assert_eq!(
            run(&filter, &ipv4(6, 0, 0, 40000, 9000 + MAX_PORTS as u16 - 1)),
            SNAP_LEN
        );
        assert_eq!(run(&filter, &ipv6(6, 9000, 1)), SNAP_LEN);
        assert_eq!(run(&filter, &ipv6(6, 1, 2)), 0);
    }
}
