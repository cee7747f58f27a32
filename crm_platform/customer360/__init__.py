"""Customer 360: every interaction from every silo on one timeline per golden customer
(``timeline``)."""
