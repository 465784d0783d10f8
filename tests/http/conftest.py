"""The operations tests import their helpers from ophelp.py beside them."""
