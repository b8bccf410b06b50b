"""Errors that mean "the input is wrong": the command line turns them into exit code 2."""


class InputError(Exception):
    """Bad input (config, data, arguments). Its message is one line naming what is at fault."""


class ConfigError(InputError):
    """A config file, a key in it, or a --set override is wrong."""


class DataError(InputError):
    """A data file is missing, unreadable or holds values we cannot train on."""
