"""PSEM services (ANSI C12.18 application layer) answered over the optical port.

`Services.handle(request, out)` writes the response into `out` and returns its length.
The session state machine, logon, security and tables grow here (issue 7).
"""

from micropython import const

import c1218 as L

_IDENTIFY = const(0x20)
_TERMINATE = const(0x21)
_STD_C1218 = const(0)
_VERSION = const(1)
_REVISION = const(0)


class Services:
    def __init__(self, meter):
        self._meter = meter

    def handle(self, req, out):
        if not len(req):
            out[0] = L.ERR
            return 1
        code = req[0]
        if code == _IDENTIFY:
            out[0] = L.OK
            out[1] = _STD_C1218
            out[2] = _VERSION
            out[3] = _REVISION
            out[4] = 0  # end of the feature list
            return 5
        if code == _TERMINATE:
            out[0] = L.OK
            return 1
        out[0] = L.SNS
        return 1
