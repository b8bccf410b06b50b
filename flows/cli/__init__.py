"""The ``bp`` command: parsing and dispatch (``main``), the subcommands (``commands``, ``servers``), launching a flow
in this process (``launch``), exit codes (``exits``), following a pool's flow run (``pool``)."""
