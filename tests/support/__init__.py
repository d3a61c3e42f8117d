"""Test scaffolding that more than one test folder uses, kept once.

    support.fakeopenai   a scriptable OpenAI-compatible server on 127.0.0.1 (backends, reliability)
    support.miniproject  a small ftevals project in a pytester folder, replay backend (plugin, reliability)
    support.replayrun    a BANKING77 pipeline run on saved predictions, in-process or as a script
    support.scripts      load a file from scripts/ as a module (its helpers are not part of the package)

tests/ is on `sys.path` because pytest's default import mode puts the folder of tests/conftest.py
(a folder with no __init__.py) there, the same way each test folder's own helpers (datafiles.py,
netguard.py) import by their bare names; so these import as `support.<module>`.
"""
