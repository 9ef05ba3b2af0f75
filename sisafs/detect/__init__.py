"""Detectors of sensitive regions (faces, people and objects, text) behind one interface."""
