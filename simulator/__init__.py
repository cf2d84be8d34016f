"""Labelled traffic for distillwatch: scenario files in, events and ground truth out.

``load_scenario`` validates a TOML scenario, ``generate`` turns it and a seed into sorted
events (numpy columns) and labels, ``simulator.writer`` renders them as JSON lines, and
``simulator.produce`` sends them to Kafka. Benign parameters are calibrated on real traces
(``simulator/calibrate.py``, ``simulator/calibration.json``).
"""

from __future__ import annotations

from simulator.generate import Simulation, generate
from simulator.scenario import Scenario, ScenarioError, load_scenario, scenario_from_dict

__all__ = ["Scenario", "ScenarioError", "Simulation", "generate", "load_scenario",
           "scenario_from_dict"]
