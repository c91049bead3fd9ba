"""The controller contract now lives in leyline/controller.py (issue 13); this module re-exports it until
Tolaria and ops import it from there."""

from leyline.controller import Controller, ControllerContext, ControllerOutput, NoOpController

__all__ = ["Controller", "ControllerContext", "ControllerOutput", "NoOpController"]
