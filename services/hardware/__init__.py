"""The hardware service: host measurements, storage analysis and safe, quarantined clean-up.

Storage operations are confined by :class:`~sutazai.services.hardware.paths.PathPolicy` to the
configured allowed roots; walks are bounded and cancellable (:mod:`.walk`).
"""
