"""The ``bp`` command: parsing and dispatch (``main``), and launching a flow in this process (``launch``)."""
