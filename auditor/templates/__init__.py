"""Jinja2 template and stylesheet of the HTML/PDF report (package data, read by :mod:`auditor.report.html`)."""
