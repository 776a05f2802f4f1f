"""Pure decisions: no I/O, no database, no GitHub; typed values in, typed values out."""
