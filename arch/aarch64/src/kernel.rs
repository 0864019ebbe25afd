//! The boot sequence, from the first Rust function to the image's own.
//!
//! `boot.s` arrives here on core 0 at EL1 with the MMU on (boot table), a
//! stack, and .bss zeroed. In order: console, banner, boot information and
//! command line, memory (frames, heap, domain arena, the kernel's view),
//! the kernel (on this machine), interrupts and the timer; then what the
//! image does once the kernel is up ([`Init`], chosen by the board crate's
//! binary: the production image starts its servers, a harness image runs
//! the scenario the command line names).

use crate::console::CONSOLE;
use crate::semihosting::ExitStatus;
use crate::{gic, halt, kprintln, memory, semihosting, timer};
use tern_core::board::BoardConfig;
use tern_core::bootinfo::{self, BootFacts, BootSource};
use tern_core::cmdline::{self, Options};
use tern_core::domain::SharedImage;
use tern_core::frame::PhysRange;

static BOARD: spin::Once<&'static BoardConfig> = spin::Once::new();

/// The board's short name.
pub fn board_name() -> &'static str {
    BOARD.get().map_or("?", |board| board.name)
}

/// Largest ATAG list Tern reads (the list QEMU writes is a few hundred bytes).
const ATAG_WINDOW: usize = 16 * 1024;

/// Find out what the boot loader handed over in x0. The pointer is only
/// followed when it lies inside the board's RAM window (mapped by the boot
/// table): anything else is treated as "nothing".
fn read_boot_information(board: &BoardConfig, pointer: usize) -> BootFacts<'static> {
    let inside = |length: usize| {
        let start = pointer as u64;
        pointer.is_multiple_of(8)
            && start >= board.ram_window.start
            && start.checked_add(length as u64).is_some_and(|end| end <= board.ram_window.end)
    };
    if pointer == 0 || !inside(64) {
        return BootFacts::none();
    }
    // SAFETY: 64 bytes inside the RAM window, which the boot table maps as
    // normal memory; the loader put its blob there and nothing has
    // overwritten it (the frame allocator reserves it before handing out
    // memory).
    let header = unsafe { core::slice::from_raw_parts(pointer as *const u8, 64) };
    if let Some(size) = bootinfo::fdt_total_size(header) {
        if inside(size) {
            // SAFETY: as above, for the whole device tree.
            let blob = unsafe { core::slice::from_raw_parts(pointer as *const u8, size) };
            if let Ok(facts) = bootinfo::parse_fdt(blob, pointer as u64) {
                return facts;
            }
        }
    } else if bootinfo::looks_like_atags(header) && inside(ATAG_WINDOW) {
        // SAFETY: as above; the parser stops at ATAG_NONE, well inside.
        let blob = unsafe { core::slice::from_raw_parts(pointer as *const u8, ATAG_WINDOW) };
        if let Ok(facts) = bootinfo::parse_atags(blob, pointer as u64) {
            return facts;
        }
    }
    BootFacts::none()
}

/// What an image does once the kernel is up, given the command line; the
/// status to stop with (under the test harness, QEMU's exit status).
pub type Init = fn(&Options<'_>) -> ExitStatus;

/// The kernel proper, on the boot core. Never returns.
pub fn main(board: &'static BoardConfig, boot_information: usize, entry_level: u64, init: Init) -> ! {
    BOARD.call_once(|| board);
    CONSOLE.init(&board.uart);
    kprintln!();
    kprintln!("Tern {}: migrating threads on AArch64", tern_core::syscall::VERSION);
    kprintln!("board: {} ({})", board.name, board.description);

    let facts = read_boot_information(board, boot_information);
    let source = match facts.source {
        BootSource::DeviceTree => "device tree",
        BootSource::Atags => "ATAGs",
        BootSource::None => "nothing",
    };
    let line = facts.cmdline.unwrap_or("");
    let options = cmdline::parse(line, |word| kprintln!("warning: unknown option '{}' ignored", word));
    semihosting::set_harness(options.harness);
    kprintln!(
        "entered at EL{}, now EL{}; boot loader passed {} at 0x{:x}; command line: \"{}\"",
        entry_level,
        crate::cpu::current_exception_level(),
        source,
        boot_information,
        line
    );

    let image = memory::ImageLayout::of_this_image();
    let summary = match memory::init(board, &facts, &image) {
        Ok(summary) => summary,
        Err(reason) => {
            kprintln!("memory set-up failed: {}", reason);
            halt::stop(ExitStatus::Fail);
        }
    };
    defmt::info!(
        "memory: {=u64} MiB RAM, {=usize} frames free, heap {=u64:#x}..{=u64:#x}, domain arena {=u64:#x}..{=u64:#x}",
        summary.ram_bytes >> 20,
        summary.free_frames,
        summary.heap.start,
        summary.heap.end,
        summary.arena.start,
        summary.arena.end
    );
    kprintln!(
        "memory: {} MiB RAM ({}), image 0x{:x}..0x{:x}, kernel view at 0x{:x}",
        summary.ram_bytes >> 20,
        if facts.memory().is_empty() { "board default" } else { source },
        image.whole().start,
        image.whole().end,
        summary.kernel_table
    );
    let merge_at_start = options.merge.map_or_else(alloc::vec::Vec::new, |list| {
        list.split(',').filter(|name| !name.is_empty()).map(alloc::string::String::from).collect()
    });
    let machine = crate::machine::Aarch64::new(summary.kernel_table, summary.arena);
    let shared = SharedImage { read_only: PhysRange::new(image.text.start, image.read_only.end) };
    let kernel = tern_core::kernel::Kernel::new(machine, tern_inks::layer(), summary.arena, shared, merge_at_start);
    *crate::state::KERNEL.lock() = Some(kernel);
    crate::state::with(|_| ());

    gic::init(&board.gic);
    gic::enable(board.timer_interrupt);
    timer::start(board.timer_interrupt);
    // Console input: from now on the kernel state exists to queue it in.
    gic::enable(board.uart.interrupt);
    crate::console::CONSOLE.enable_receive_interrupt(board.uart.interrupt);
    defmt::info!("timer: {=u64} Hz counter, {=u32} Hz ticks", timer::frequency(), timer::TICK_HZ);

    let status = init(&options);
    halt::stop(status)
}

/// One `tick N` line a second, forever, interrupts open: what an image
/// does once it has started what it runs (until there is a shell).
pub fn tick_forever() -> ! {
    let mut seconds = 0;
    crate::cpu::enable_interrupts();
    loop {
        crate::cpu::wait_for_interrupt();
        // Let the threads that interrupts made ready (a console reader
        // woken by input) run; this thread is the least urgent.
        crate::cpu::mask_interrupts();
        crate::threads::yield_now();
        crate::cpu::enable_interrupts();
        let now = timer::ticks() / timer::TICK_HZ as u64;
        if now > seconds {
            seconds = now;
            kprintln!("tick {}", seconds);
        }
    }
}

/// Declare an image's entry point: `board_entry!(BOARD, init)`. `BOARD`
/// must be a `const` of type [`BoardConfig`]; the macro builds the
/// compile-time boot table from its RAM window and device windows, the
/// image's allocator and panic handler, and the `tern_board_main` symbol
/// that `boot.s` jumps to, which boots the kernel and then runs `init`
/// (an [`Init`]).
#[macro_export]
macro_rules! board_entry {
    ($board:path, $init:path) => {
        static TERN_BOARD: $crate::BoardConfig = $board;

        #[global_allocator]
        static TERN_ALLOCATOR: $crate::memory::TernAllocator = $crate::memory::TernAllocator::new($board.domain_arena);

        #[unsafe(no_mangle)]
        static TERN_BOOT_TABLE: $crate::BootTable = $crate::boot_table(&[$board.ram_window], $board.devices);

        #[panic_handler]
        fn tern_panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::panic(&TERN_ALLOCATOR, info)
        }

        #[unsafe(no_mangle)]
        extern "C" fn tern_board_main(boot_information: usize, entry_level: u64) -> ! {
            $crate::kernel::main(&TERN_BOARD, boot_information, entry_level, $init)
        }
    };
}
