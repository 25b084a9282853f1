"""Run-time integration with mmengine: safe checkpoint loading, device-aware norm layers."""
