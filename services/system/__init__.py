"""The system service: live health of every part of the mesh."""
