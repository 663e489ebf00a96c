"""What goes out: infotext, saving (formats, names, the save log) and grids."""
