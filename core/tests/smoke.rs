//! Smoke test: one migrating call and return on the mock machine.

use tern_core::abi::{Call, MessageHeader, Role};
use tern_core::board::DOMAIN_REGION;
use tern_core::domain::{DomainSpec, SharedImage};
use tern_core::frame::PhysRange;
use tern_core::kernel::{Kernel, Next};
use tern_core::mock::{MockFrame, MockMachine, no_servers};

fn entry(_: usize) -> usize {
    0
}
static CLIENT: DomainSpec = DomainSpec { name: "client", entry, role: Role::Plain };
static SERVER: DomainSpec = DomainSpec { name: "server", entry, role: Role::Plain };

const ARENA: u64 = 0x6000_0000;
const IMAGE: PhysRange = PhysRange::new(0x8_0000, 0x10_0000);

#[test]
fn migrating_call_and_return() {
    let mut kernel: Kernel<MockMachine> = Kernel::new(
        MockMachine::default(),
        no_servers(),
        PhysRange::new(ARENA, ARENA + 8 * DOMAIN_REGION),
        SharedImage { read_only: IMAGE },
        Vec::new(),
    );
    let client = kernel.create_domain(&CLIENT).unwrap();
    let server = kernel.create_domain(&SERVER).unwrap();
    // The server's main activation (an upcall from the boot thread) makes a port and a pool.
    let boot = kernel.current();
    let (main, _) = kernel.enter_domain(server, kernel.domain(server).unwrap().main_stack, 0, 0).unwrap();
    let mut frame = MockFrame::calling(Call::PortCreate, &[], 0x9_0000);
    assert_eq!(kernel.kernel_call(&mut frame), Next::Resume);
    let port_name = frame.result().unwrap() as u64;
    let mut frame = MockFrame::calling(Call::PoolAdd, &[port_name, 1, 0x9_1000, 64 << 10], 0x9_0000);
    assert_eq!(kernel.kernel_call(&mut frame), Next::Resume);
    assert_eq!(frame.result(), Ok(1));
    kernel.leave_domain(main);
    let client_name = kernel.grant_send_right(server, port_name as u32, client).unwrap();
    // The client calls.
    let (_, _) = kernel.enter_domain(client, kernel.domain(client).unwrap().main_stack, 0, 0).unwrap();
    let base = kernel.domain(client).unwrap().domain.region.start + 0x1000;
    let mut request = [0u8; 48];
    MessageHeader::new(7, 32).write_to(&mut request);
    request[16..].copy_from_slice(&[5; 32]);
    kernel.machine.poke(base, &request);
    let reply = base + 0x100;
    let mut frame = MockFrame::calling(Call::Call, &[client_name as u64, base, 48, reply, 64], 0x9_0004);
    assert_eq!(kernel.kernel_call(&mut frame), Next::Resume);
    assert_eq!(kernel.current(), boot, "the same thread runs on, in the server");
    assert_eq!(frame.context.pc, 0x9_1000);
    let message = frame.context.x[0];
    assert_eq!(kernel.machine.peek(message + 16, 32), vec![5; 32]);
    assert_eq!(kernel.statistics().migrated, 1);
    // The server returns a reply from its stack.
    let answer = message - 0x100;
    let mut reply_bytes = [0u8; 20];
    MessageHeader::new(9, 4).write_to(&mut reply_bytes);
    reply_bytes[16..].copy_from_slice(&[1, 2, 3, 4]);
    kernel.machine.poke(answer, &reply_bytes);
    let mut back = MockFrame::calling(Call::Return, &[answer, 20], frame.context.pc);
    assert_eq!(kernel.kernel_call(&mut back), Next::Resume);
    assert_eq!(back.result(), Ok(20));
    assert_eq!(back.context.pc, 0x9_0004, "back in the client, after its call");
    assert_eq!(kernel.machine.peek(reply + 16, 4), vec![1, 2, 3, 4]);
}
