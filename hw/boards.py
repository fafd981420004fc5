"""The boards the device runs on, and the top level that puts a design on one.

A board top level is the same on every board::

    oscillator ─► PLL ─► sync clock ─┐      button, PLL lock ─► reset synchroniser ─► sync reset
                                     │
    USB-UART rx pin ─► UART ─rx─► design (appliance or loopback) ─tx─► UART ─► tx pin
                        │  framing error, overrun                 │ ready
                        └──────────────► LEDs (pulse stretchers) ◄┘

:data:`BOARDS` lists the boards, by the name ``ocee hw build --board`` takes:

``ulx3s-85f``
    Radiona ULX3S with an LFE5U-85F: a 25 MHz oscillator, the FT231X USB-UART (FPGA rx on M1,
    tx on L4), LEDs 0-3 for ready / rx / tx / error and LED 7 as a heartbeat, the PWR button as
    reset. The appliance's board.
``ecpix5-85f``
    LambdaConcept ECPIX-5 with an LFE5UM5G-85F: a 100 MHz oscillator, the FT2232's second channel
    as UART (FPGA rx on R26, tx on R24), the green LEDs of the four RGB LEDs, the red one of LED 3
    for errors, the reset button.
``icebreaker``
    1BitSquared iCEBreaker (iCE40UP5K): a 12 MHz oscillator, the FT2232's UART (rx pin 6, tx pin
    9), the green/red LEDs and the snap-off PMOD's LEDs, the user button as reset. The appliance
    does not fit an UP5K: the loopback design only.

Not listed: the OrangeCrab (an ECP5-85F as well) has no USB-UART bridge, its USB port goes
straight to the FPGA. It would need a 3.3 V USB-serial cable on its feather header (e.g. rx on
the pin labelled ``RX``, tx on ``TX``, i.e. ``io`` pins 0 and 1 of the header) and a board entry
here naming them.

The design clock comes from the board oscillator through a PLL (ECP5 ``EHXPLLL``, iCE40
``SB_PLL40_PAD``), chosen so that the UART's bit period is a whole number of clocks: the default
30 MHz gives 10 clocks per bit at 3 Mbaud, and is reachable from 12, 25 and 100 MHz. A frequency
the PLL cannot make exactly is refused with the nearest ones it can.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from amaranth import ClockDomain, Const, Elaboratable, Instance, Module, Mux, Signal
from amaranth.lib import fifo, io, stream, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from .link.uart import UART, uart_divisor

__all__ = [
    "BOARDS", "BOARD_HASHING", "DEFAULT_BAUD", "DESIGNS", "Board", "BoardTop", "DesignUnavailable",
    "Loopback", "PulseStretcher", "design_factory", "ecp5_pll", "get_board", "ice40_pll",
]

#: The host link's line rate (docs/link.md).
DEFAULT_BAUD = 3_000_000


class DesignUnavailable(RuntimeError):
    """The design asked for cannot be built (its gateware is missing, or it does not fit)."""


# -- Designs --------------------------------------------------------------------------------------


class Loopback(wiring.Component):
    """The bring-up design: every byte received is sent back, through a small FIFO.

    The first thing to flash on a new board: with a terminal at the link's baud rate, typed
    characters come back, which checks the clock, the PLL, the UART pins and the host's serial
    settings before the appliance is involved. The FIFO lets the host send a burst of up to
    ``depth`` bytes faster than they are echoed (they are not: both directions run at the same
    rate, but the host may pause reading).

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the host.
    tx : Out(stream.Signature(8))
        The same bytes, back.
    ready : Out(1)
        Always 1: there is no init sequence.
    """

    def __init__(self, depth: int = 16) -> None:
        self.depth = depth
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "ready": Out(1),
        })

    def describe(self) -> str:
        """The configuration in a line, for ``ocee hw report``."""
        return f"byte echo through a {self.depth}-byte FIFO"

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.fifo = queue = fifo.SyncFIFOBuffered(width=8, depth=self.depth)
        wiring.connect(m, wiring.flipped(self.rx), queue.w_stream)
        wiring.connect(m, queue.r_stream, wiring.flipped(self.tx))
        m.d.comb += self.ready.eq(1)
        return m


def _loopback(clk_freq: int) -> wiring.Component:
    return Loopback()


#: The hashing stage the boards build (keyword arguments of ``Appliance`` and ``EngineCore``).
#: One slice-serial Keccak permutation (8 slices per clock, 201 clocks per permutation) shared by
#: leaves and tree: the full-round ring's XOR cones are what kept the appliance from routing on
#: the 85F (docs/benchmarks.md). It hashes an event per 400.59 clocks (`ocee bench hashing
#: --slices-per-clock 8 --shared --queue-depth 2`), 74,900 events/s at 30 MHz, seven times the
#: 10,900 a 3 Mbaud link carries; the queues hold two (the link is the bound). `ocee bench core`
#: measures it behind the matching engine (docs/hw-hashing.md).
BOARD_HASHING: Mapping[str, Any] = {"rounds_per_cycle": 1, "hash_shared_permutation": True,
                                    "hash_slices_per_clock": 8, "hash_queue_depth": 2}


def _appliance(clk_freq: int) -> wiring.Component:
    try:
        from .appliance import Appliance
    except ImportError as e:
        raise DesignUnavailable(f"the appliance design (ocee.hw.appliance) cannot be imported "
                                f"({e}); build --design loopback meanwhile") from None
    from .matching.config import MatchingConfig
    # The retransmission timeout is the host's default, 50 ms.
    return Appliance(MatchingConfig(), **BOARD_HASHING, rto_cycles=clk_freq // 20)


#: The designs a board top level can hold: each is built from the design clock's frequency, and
#: has ``rx: In(stream.Signature(8))``, ``tx: Out(stream.Signature(8))`` and ``ready: Out(1)``.
DESIGNS: dict[str, Callable[[int], wiring.Component]] = {
    "appliance": _appliance,
    "loopback": _loopback,
}


def design_factory(name: str) -> Callable[[int], wiring.Component]:
    try:
        return DESIGNS[name]
    except KeyError:
        raise ValueError(f"no design {name!r}; the designs are {', '.join(DESIGNS)}") from None


# -- PLLs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ECP5PLL:
    """``EHXPLLL`` dividers: ``CLKOP = CLKI * CLKFB_DIV / CLKI_DIV``, with ``CLKOP`` fed back
    (so the VCO runs at ``CLKOP * CLKOP_DIV``)."""

    clki_div: int
    clkfb_div: int
    clkop_div: int

    def vco(self, f_in: int) -> Fraction:
        return Fraction(f_in * self.clkfb_div * self.clkop_div, self.clki_div)


def ecp5_pll(f_in: int, f_out: int) -> ECP5PLL | None:
    """Dividers that make exactly ``f_out`` from ``f_in`` (Hz), or None. The limits are those of
    the ECP5 datasheet as Project Trellis' ``ecppll`` uses them (PFD 3.125-400 MHz, VCO
    400-800 MHz, output 10-400 MHz); among several solutions, the VCO nearest 600 MHz, as
    ``ecppll`` chooses."""
    if not 10e6 <= f_out <= 400e6:
        return None
    best: ECP5PLL | None = None
    for clki_div in range(1, 129):
        if not 3.125e6 <= f_in / clki_div <= 400e6:
            continue
        clkfb_div, rem = divmod(f_out * clki_div, f_in)
        if rem or not 1 <= clkfb_div <= 80:
            continue
        for clkop_div in range(1, 129):
            pll = ECP5PLL(clki_div, clkfb_div, clkop_div)
            vco = pll.vco(f_in)
            if 400e6 <= vco <= 800e6 and (best is None or
                                         abs(vco - 600_000_000) < abs(best.vco(f_in) - 600_000_000)):
                best = pll
    return best


@dataclass(frozen=True)
class ICE40PLL:
    """``SB_PLL40`` dividers in simple feedback mode: ``out = in * (DIVF + 1) / (DIVR + 1) /
    2**DIVQ``."""

    divr: int
    divf: int
    divq: int

    def filter_range(self, f_in: int) -> int:
        # The loop filter setting for the PFD frequency, as icepll chooses it.
        pfd = f_in / (self.divr + 1) / 1e6
        return 1 if pfd < 17 else 2 if pfd < 26 else 3 if pfd < 44 else 4 if pfd < 66 \
            else 5 if pfd < 101 else 6


def ice40_pll(f_in: int, f_out: int) -> ICE40PLL | None:
    """Dividers that make exactly ``f_out`` from ``f_in`` (Hz), or None (iCE40 limits as in
    ``icepll``: PFD 10-133 MHz, VCO 533-1066 MHz, output 16-275 MHz)."""
    if not 16e6 <= f_out <= 275e6:
        return None
    for divr in range(16):
        if not 10e6 <= f_in / (divr + 1) <= 133e6:
            continue
        for divq in range(1, 7):
            divf, rem = divmod(f_out * (divr + 1) * (1 << divq), f_in)
            if rem or not 1 <= divf <= 128:
                continue
            if 533e6 <= f_out * (1 << divq) <= 1066e6:
                return ICE40PLL(divr, divf - 1, divq)
    return None


# -- Boards ---------------------------------------------------------------------------------------


#: An output on the board: (resource name, number) or (resource name, number, subsignal).
Pin = tuple[str, int] | tuple[str, int, str]


@dataclass(frozen=True)
class Board:
    """A supported board: its amaranth-boards platform and what the top level uses on it."""

    name: str
    title: str
    platform_class: Callable[[], Any]
    family: str  # "ecp5" or "ice40": which PLL, and which toolchain
    osc: str  # the oscillator's resource
    osc_hz: int
    uart: tuple[str, int]
    uart_pins: str  # for people: which chip and pins carry the link
    leds: dict[str, Pin]  # "ready", "rx", "tx", "error", optionally "heartbeat"
    reset_button: Pin | None
    programmer: tuple[str, ...]  # the command, "{bitstream}" standing for the file
    bitstream: str  # the build product that is programmed
    designs: tuple[str, ...] = ("appliance", "loopback")
    default_clk_mhz: float = 30.0
    notes: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    def platform(self) -> Any:
        return self.platform_class()

    def clock_hz(self, clk_mhz: float | None) -> int:
        """The design clock for ``clk_mhz`` (the board's default if None), checked against what
        its PLL can make; :class:`ValueError` names the nearby frequencies it can."""
        mhz = self.default_clk_mhz if clk_mhz is None else clk_mhz
        hz = round(mhz * 1e6)
        if mhz <= 0 or abs(hz - mhz * 1e6) > 0.5:
            raise ValueError(f"the clock must be a positive whole number of Hz, not {mhz} MHz")
        if hz != self.osc_hz and self._pll(hz) is None:
            near = [f for f in range(1, 401) if self._pll(f * 1_000_000) is not None
                    and abs(f - mhz) <= 15]
            raise ValueError(f"the {self.title}'s PLL cannot make {mhz:g} MHz exactly from its "
                             f"{self.osc_hz / 1e6:g} MHz oscillator; whole MHz it can make near "
                             f"there: {', '.join(map(str, near)) or 'none'}")
        return hz

    def _pll(self, hz: int) -> ECP5PLL | ICE40PLL | None:
        return ecp5_pll(self.osc_hz, hz) if self.family == "ecp5" else ice40_pll(self.osc_hz, hz)


def _ulx3s_85f() -> Any:
    from amaranth_boards.ulx3s import ULX3S_85F_Platform  # type: ignore[import-untyped]
    return ULX3S_85F_Platform()


def _ecpix5_85f() -> Any:
    from amaranth_boards.ecpix5 import ECPIX585Platform  # type: ignore[import-untyped]
    return ECPIX585Platform()


def _icebreaker() -> Any:
    from amaranth_boards.icebreaker import ICEBreakerPlatform  # type: ignore[import-untyped]
    platform = ICEBreakerPlatform()
    # The LEDs of the snap-off PMOD (on PMOD2 whether snapped off or not) show rx/tx activity.
    platform.add_resources(platform.break_off_pmod)
    return platform


BOARDS: dict[str, Board] = {b.name: b for b in [
    Board(
        name="ulx3s-85f", title="ULX3S 85F", platform_class=_ulx3s_85f, family="ecp5",
        osc="clk25", osc_hz=25_000_000, uart=("uart", 0),
        uart_pins="FT231X USB-UART on the US1 port: FPGA rx M1, tx L4",
        leds={"ready": ("led", 0), "rx": ("led", 1), "tx": ("led", 2), "error": ("led", 3),
              "heartbeat": ("led", 7)},
        reset_button=("button_pwr", 0),
        programmer=("openFPGALoader", "-b", "ulx3s", "{bitstream}"), bitstream="top.bit"),
    Board(
        name="ecpix5-85f", title="ECPIX-5 85F", platform_class=_ecpix5_85f, family="ecp5",
        osc="clk100", osc_hz=100_000_000, uart=("uart", 0),
        uart_pins="FT2232 channel B: FPGA rx R26, tx R24",
        leds={"ready": ("rgb_led", 0, "g"), "rx": ("rgb_led", 1, "g"), "tx": ("rgb_led", 2, "g"),
              "error": ("rgb_led", 3, "r"), "heartbeat": ("rgb_led", 3, "b")},
        reset_button=("rst", 0),
        programmer=("openFPGALoader", "-b", "ecpix5", "{bitstream}"), bitstream="top.bit"),
    Board(
        name="icebreaker", title="iCEBreaker", platform_class=_icebreaker, family="ice40",
        osc="clk12", osc_hz=12_000_000, uart=("uart", 0),
        uart_pins="FT2232 channel B: FPGA rx 6, tx 9",
        leds={"ready": ("led", 1), "error": ("led", 0), "rx": ("led", 2), "tx": ("led", 3),
              "heartbeat": ("led", 4)},
        reset_button=("button", 0),
        programmer=("iceprog", "-S", "{bitstream}"), bitstream="top.bin",
        designs=("loopback",),
        notes="the appliance does not fit an iCE40UP5K: loopback only"),
]}


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"no board {name!r}; the boards are {', '.join(BOARDS)}") from None


# -- The top level --------------------------------------------------------------------------------


class PulseStretcher(wiring.Component):
    """``o`` goes high with a pulse on ``i`` and stays high for ``ticks`` more pulses of ``tick``
    (a slow strobe shared by every LED), so that a one-clock strobe is visible on an LED.

    Counting a shared millisecond strobe rather than clocks keeps each counter short: a 50 ms
    stretch counted in clocks is a 21-bit counter whose carry chain limited the iCE40 build to
    22 MHz.

    Members
    -------
    i : In(1)
        The pulse to stretch.
    tick : In(1)
        The time base.
    o : Out(1)
        High for ``ticks`` (minus part of one) periods of ``tick`` after each pulse.
    """

    def __init__(self, ticks: int) -> None:
        if isinstance(ticks, bool) or not isinstance(ticks, int) or ticks < 1:
            raise ValueError(f"ticks must be a positive integer, not {ticks!r}")
        self.ticks = ticks
        super().__init__({"i": In(1), "tick": In(1), "o": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        count = Signal(range(self.ticks + 1))
        with m.If(self.i):
            m.d.sync += count.eq(self.ticks)
        with m.Elif(self.tick & (count != 0)):
            m.d.sync += count.eq(count - 1)
        m.d.comb += self.o.eq(count != 0)
        return m


def _input(m: Module, platform: Any, name: str, number: int, label: str) -> Any:
    """The value of a one-bit input resource, through an input buffer."""
    m.submodules[f"{label}_buffer"] = buffer = io.Buffer("i", platform.request(name, number,
                                                                               dir="-"))
    return buffer.i


class BoardTop(Elaboratable):
    """A design on a board: clock, reset, UART and LEDs around it (see the module docstring).

    ``board`` is a :class:`Board` or its name; ``design`` builds the design from the design
    clock in Hz (an entry of :data:`DESIGNS`, or any such callable). ``clk_mhz`` (default the
    board's) and ``baud`` are checked at construction: :class:`ValueError` when the PLL cannot
    make the clock, or the clock cannot make the baud rate.

    The LEDs: ``ready`` follows the design's ``ready``; ``rx`` and ``tx`` flash for each byte;
    ``error`` lights for half a second after a framing error or an overrun; ``heartbeat`` (where
    the board has a spare LED) flashes about once a second while the clock runs and reset is released.
    """

    #: How long a pulse lights an LED, in ticks of 0.5 to 1 ms: long enough to see one byte.
    ACTIVITY_MS = 50
    ERROR_MS = 500

    def __init__(self, board: Board | str, design: Callable[[int], wiring.Component] | str, *,
                 clk_mhz: float | None = None, baud: int = DEFAULT_BAUD) -> None:
        try:
            self.board = board if isinstance(board, Board) else get_board(board)
            self.clk_freq = self.board.clock_hz(clk_mhz)
            self.baud = baud
            self.divisor = uart_divisor(self.clk_freq, baud)
            if isinstance(design, str):
                factory = design_factory(design)
                if design not in self.board.designs:
                    raise DesignUnavailable(f"the {design} design is not built for the "
                                            f"{self.board.title}: {self.board.notes}")
                design = factory
        except (ValueError, DesignUnavailable):
            # Amaranth warns about every elaboratable never elaborated: not about a refused one.
            self._MustUse__silence = True
            raise
        self.design = design
        #: The design as elaborated (its ``describe()`` goes into the build's records).
        self.component: wiring.Component | None = None

    def _clock(self, m: Module, platform: Any) -> Signal:
        """Make the sync domain's clock; returns the PLL's lock (1 when there is no PLL)."""
        board, hz = self.board, self.clk_freq
        m.domains.sync = cd_sync = ClockDomain("sync")
        if hz == board.osc_hz:
            m.d.comb += cd_sync.clk.eq(_input(m, platform, board.osc, 0, "osc"))
            return Const(1, 1)
        locked = Signal()
        if board.family == "ecp5":
            pll = ecp5_pll(board.osc_hz, hz)
            assert pll is not None  # checked in __init__
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=str(board.osc_hz / 1e6),
                a_FREQUENCY_PIN_CLKOP=str(hz / 1e6),
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                p_CLKI_DIV=pll.clki_div, p_CLKFB_DIV=pll.clkfb_div,
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=pll.clkop_div,
                p_CLKOP_CPHASE=pll.clkop_div - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                i_CLKI=_input(m, platform, board.osc, 0, "osc"), i_CLKFB=cd_sync.clk,
                i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=cd_sync.clk, o_LOCK=locked)
        else:
            pll40 = ice40_pll(board.osc_hz, hz)
            assert pll40 is not None
            # The PAD variant: the oscillator's pin feeds the PLL directly (the iCE40's global
            # input next to the PLL), so the resource is requested without a buffer.
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=pll40.divr, p_DIVF=pll40.divf,
                p_DIVQ=pll40.divq, p_FILTER_RANGE=pll40.filter_range(board.osc_hz),
                i_PACKAGEPIN=platform.request(board.osc, 0, dir="-").io,
                i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=cd_sync.clk, o_LOCK=locked)
        # No clock constraint is added for the PLL's output: nextpnr derives it from the
        # oscillator's (which comes with its resource) and the PLL's dividers ("Derived frequency
        # constraint of 30.0 MHz for net clk"), while a constraint on the Amaranth signal would
        # name a net that no longer exists after synthesis, and be ignored with a warning.
        return locked

    def elaborate(self, platform: Any) -> Module:
        board, hz = self.board, self.clk_freq
        # The design first: if it cannot be built, nothing else has been made (Amaranth would
        # warn about each elaboratable left unused).
        design = self.component = self.design(hz)
        m = Module()
        locked = self._clock(m, platform)

        reset = ~locked
        if board.reset_button is not None:
            name, number = board.reset_button[:2]
            reset = reset | _input(m, platform, name, number, "reset_button")
        m.submodules.reset_sync = ResetSynchronizer(reset, domain="sync")

        m.submodules.uart = uart = UART(hz, self.baud)
        pins = platform.request(*board.uart, dir="-")
        m.submodules.uart_rx_buffer = rx_buffer = io.Buffer("i", pins.rx)
        m.submodules.uart_tx_buffer = tx_buffer = io.Buffer("o", pins.tx)
        m.d.comb += [uart.rx_pin.eq(rx_buffer.i), tx_buffer.o.eq(uart.tx_pin)]

        m.submodules.design = design
        wiring.connect(m, uart.rx, design.rx)
        wiring.connect(m, design.tx, uart.tx)
        if "line_error" in design.signature.members:
            m.d.comb += design.line_error.eq(uart.framing_error | uart.overrun)

        # The LEDs' time base: a strobe every 2**k clocks, 0.5 to 1 ms. A free-running counter
        # (no reload, no reset) is a bare carry chain: the iCE40 build makes 56 MHz with it, 25
        # MHz with a reloaded millisecond counter.
        millisecond = Signal()
        prescaler = Signal(max(1, (hz // 1000).bit_length() - 1), reset_less=True)
        top_bit = Signal()
        m.d.sync += [prescaler.eq(prescaler + 1), top_bit.eq(prescaler[-1])]
        m.d.comb += millisecond.eq(top_bit & ~prescaler[-1])
        strobes = {
            "rx": (uart.rx.valid & uart.rx.ready, self.ACTIVITY_MS),
            "tx": (uart.tx.valid & uart.tx.ready, self.ACTIVITY_MS),
            "error": (uart.framing_error | uart.overrun, self.ERROR_MS),
        }
        levels: dict[str, Any] = {"ready": design.ready}
        for name, (strobe, ticks) in strobes.items():
            stretcher = PulseStretcher(ticks)
            m.submodules[f"led_{name}"] = stretcher
            m.d.comb += [stretcher.i.eq(strobe), stretcher.tick.eq(millisecond)]
            levels[name] = stretcher.o
        if "heartbeat" in board.leds:
            beat = Signal(range(1000))  # ticks: about one flash a second
            on = Signal()
            with m.If(millisecond):
                m.d.sync += beat.eq(Mux(beat == 999, 0, beat + 1))
                with m.If(beat == 0):
                    m.d.sync += on.eq(1)
                with m.If(beat == 99):
                    m.d.sync += on.eq(0)
            levels["heartbeat"] = on
        requested: dict[tuple[str, int], Any] = {}  # an RGB LED is one resource, requested once
        for name, level in levels.items():
            led = board.leds[name]
            key = (led[0], led[1])
            if key not in requested:
                requested[key] = platform.request(*key, dir="-")
            port = getattr(requested[key], led[2]) if len(led) == 3 else requested[key]
            m.submodules[f"led_{name}_buffer"] = buffer = io.Buffer("o", port)
            m.d.comb += buffer.o.eq(level)
        return m
