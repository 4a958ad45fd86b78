"""The configuration: one typed `Settings` tree (settings.py), its sections, and
where values come from (sources.py).
"""
