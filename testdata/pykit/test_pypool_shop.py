"""The unit tests of pypool_shop, run with plain unittest and the kit:
PYTHONPATH=<pypool>/python python3 -m unittest discover -s testdata/pykit"""

import unittest

from pypool import GoError, testing

import pypool_shop


class ShopTest(unittest.TestCase):
    def test_greet_calls_go(self):
        with testing.fake_callbacks({"lookup_user": lambda user_id: {"name": "Ada", "id": user_id}}) as go:
            self.assertEqual(testing.call(pypool_shop.greet, 7), "Hello, Ada")
        self.assertEqual(go.calls, [("lookup_user", [7])])

    def test_greet_when_go_fails(self):
        def missing(user_id):
            raise GoError("no user %d" % user_id)

        with testing.fake_callbacks({"lookup_user": missing}):
            self.assertEqual(testing.call(pypool_shop.greet, 7), "Hello, stranger")

    def test_unregistered_callback_is_a_go_error(self):
        with testing.fake_callbacks({}):
            self.assertEqual(testing.call(pypool_shop.greet, 7), "Hello, stranger")

    @testing.fake_callbacks({"price_cents": lambda sku: 1250})
    def test_price_crosses_as_extension(self):
        self.assertEqual(testing.call(pypool_shop.price, "A-1"), pypool_shop.Money(1250))

    def test_tags(self):
        self.assertEqual(testing.call(pypool_shop.tags, {"tags": ["b", "a", "b"]}), ["a", "b"])

    def test_tag_set_cannot_cross(self):
        with self.assertRaises(testing.NotEncodable) as caught:
            testing.call(pypool_shop.tag_set, {"tags": ["a"]})
        self.assertEqual(caught.exception.message, "cannot encode the result of tag_set() for Go: result: set (can not serialize 'set' object)")
        self.assertIn("sorted(value) or list(value)", caught.exception.hint)

    def test_basket_cannot_cross(self):
        with self.assertRaises(testing.NotEncodable) as caught:
            testing.call(pypool_shop.basket)
        self.assertIn("result['items'][0]: pypool_shop.Basket", caught.exception.message)
        self.assertIn("register_ext(Basket", caught.exception.hint)

    @testing.fake_callbacks({"price_cents": lambda sku: 990})
    def test_quote_reads_the_call_context(self):
        with testing.call_context(remaining=2.0, metadata={"tenant": "acme"}):
            self.assertEqual(testing.call(pypool_shop.quote, "A-1"), {"sku": "A-1", "tenant": "acme", "cents": 990})
        self.assertEqual(testing.call(pypool_shop.quote, "A-1")["tenant"], "public")
        with testing.call_context(remaining=0.01):
            with self.assertRaises(TimeoutError):
                testing.call(pypool_shop.quote, "A-1")


if __name__ == "__main__":
    unittest.main()
