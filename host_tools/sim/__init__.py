"""The simulated board: the real firmware in the MicroPython VM against virtual hardware."""

from host_tools.sim.board import FirmwareCrashed, SimBoard, SimError

__all__ = ["FirmwareCrashed", "SimBoard", "SimError"]
